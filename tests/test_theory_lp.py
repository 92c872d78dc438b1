"""The linear program against closed forms (theory.interpolation)."""
import numpy as np
import pytest

from theory.interpolation import closed_form_interpolation_norm, lp_interpolate, lp_min_norm
from theory.norms import fn_norm, path_norm


def test_reference_numbers_related_methods_6_7():
    r0 = np.random.default_rng(0)
    x = np.sort(r0.uniform(0, 3, 7))
    y = r0.normal(size=7)
    assert lp_interpolate(x, y, linear_unit=True).value == pytest.approx(53.1249, abs=1e-4)
    assert closed_form_interpolation_norm(x, y, linear_unit=True) == pytest.approx(53.1249, abs=1e-4)
    dense = np.concatenate([x, np.linspace(-5, 8, 1301)])
    assert lp_interpolate(x, y, knots=dense, bias_regularized=True).value == pytest.approx(93.1209, rel=2e-5)


def test_bounded_domain_pitfall():
    xs = np.linspace(-1, 4, 6)
    assert lp_interpolate(xs, xs).value == pytest.approx(1.0, abs=1e-9)
    far = np.r_[xs, -50.0, 50.0]
    assert lp_interpolate(far, far, knots=xs).value == pytest.approx(2.0, abs=1e-9)
    assert lp_interpolate(far, far, knots=xs, linear_unit=True).value == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("linear_unit", [True, False])
def test_lp_equals_closed_form_random(linear_unit):
    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(2, 12))
        x = np.sort(rng.uniform(-2, 2, n))
        y = rng.normal(size=n) + 3 * rng.normal() * x
        lp = lp_interpolate(x, y, linear_unit=linear_unit)
        cf = closed_form_interpolation_norm(x, y, linear_unit=linear_unit)
        assert lp.value == pytest.approx(cf, rel=1e-7, abs=1e-9)
        assert np.allclose(lp(x), y, atol=1e-7)
        if not linear_unit:  # the LP's network is an exact witness: its R and path norm equal the value
            assert fn_norm(lp.to_pwl()) == pytest.approx(cf, rel=1e-7, abs=1e-9)
            assert path_norm(*lp.to_net()[:2]) == pytest.approx(cf, rel=1e-7, abs=1e-9)


def test_wrong_constant_would_fail():
    # two points: min R = |slope| (single ramp), not 2|slope|
    assert closed_form_interpolation_norm([0, 1], [0, 3]) == pytest.approx(3.0)
    assert lp_interpolate(np.array([0.0, 1.0]), np.array([0.0, 3.0])).value == pytest.approx(3.0, rel=1e-9)


def test_infeasible_and_bad_bands():
    with pytest.raises(ValueError, match="lower bound"):
        lp_min_norm([0.0], [1.0], [0.0])
    with pytest.raises(RuntimeError, match="HiGHS"):
        lp_min_norm([0.0, 0.0], [0.0, 1.0])  # same point, two different values
