"""Hand-worked norms, the constructive network, rescaling invariance (theory.norms)."""
import numpy as np
import pytest

from theory.norms import (eval_net, fn_norm, fn_norm_of_net, net_from_pwl, path_norm, pwl_from_slopes,
                          relu_net_to_pwl, rescale_net, weight_norm)


@pytest.mark.parametrize("net, expected", [
    (([1.0], [1.0], [0.0], 0.0), 1.0),  # single ramp: max(1, |0 + 1|)
    (([1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], 0.0), 2.0),  # |x - 1|: max(2, 0)
    (([1.0, -1.0], [1.0, -1.0], [0.0, 0.0], 5.0), 2.0),  # x + 5 on R: boundary term |1 + 1|
    (([1.0, -1.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -1.0], 0.0), 2.0),  # x + clip(x,0,1)
    (([3.0, -3.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -1.0], 0.0), 6.0),  # 3x + clip
    (([1.0, 1.0, 0.5, -0.5], [1.0, -1.0, 1.0, -1.0], [0.0] * 4, 0.0), 2.0),  # |x| + x/2: max(2, 1)
])
def test_hand_worked_R(net, expected):
    a, w, b = (np.asarray(v, float) for v in net[:3])
    c = net[3]
    assert fn_norm_of_net(a, w, b, c) == pytest.approx(expected, abs=1e-12)


def test_pwl_description_and_merging():
    # two units with the same knot (x = 1) written with different scalings must merge
    a, w, b = np.array([1.0, 2.0, -1.0]), np.array([1.0, 0.5, -2.0]), np.array([-1.0, -0.5, 2.0])
    p = relu_net_to_pwl(a, w, b, 0.5)
    assert p.knots.tolist() == [1.0]
    assert p.slopes.tolist() == pytest.approx([2.0, 2.0])  # left: -1*-2 = 2; change +1 +1 -2 = 0
    xs = np.linspace(-3, 3, 61)
    assert np.allclose(p(xs), eval_net(a, w, b, 0.5, xs))
    assert fn_norm(p) == pytest.approx(4.0)  # linear with slope 2: boundary term only


def test_zero_weight_units_are_constants():
    p = relu_net_to_pwl([2.0, 1.0], [0.0, 1.0], [1.5, 0.0], 0.0)
    assert p.knots.tolist() == [0.0] and p(np.array([-1.0]))[0] == pytest.approx(3.0)


def test_constructive_network_norm_equals_R():
    rng = np.random.default_rng(3)
    xs = np.linspace(-15, 15, 301)
    for _ in range(50):
        k = int(rng.integers(0, 6))
        knots = np.sort(rng.uniform(-5, 5, k))
        p = pwl_from_slopes(knots, rng.normal(size=k + 1) * 3, rng.normal())
        a, w, b, c = net_from_pwl(p)
        assert np.allclose(eval_net(a, w, b, c, xs), p(xs), atol=1e-9)
        assert weight_norm(a, w) == pytest.approx(fn_norm(p), rel=1e-12)
        assert path_norm(a, w) == pytest.approx(fn_norm(p), rel=1e-12)


def test_weight_norm_at_least_R_and_rescaling_invariance():
    rng = np.random.default_rng(4)
    a, w, b = rng.normal(size=(3, 32))
    R = fn_norm_of_net(a, w, b, 0.0)
    assert weight_norm(a, w) >= path_norm(a, w) - 1e-12 >= R - 1e-12
    a2, w2, b2, _ = rescale_net(a, w, b, 0.0, np.exp(rng.normal(size=32)))
    assert path_norm(a2, w2) == pytest.approx(path_norm(a, w), rel=1e-13)
    assert fn_norm_of_net(a2, w2, b2, 0.0) == pytest.approx(R, rel=1e-12)
    balanced = rescale_net(a, w, b, 0.0, np.sqrt(np.abs(a / w)))
    assert weight_norm(balanced[0], balanced[1]) == pytest.approx(path_norm(a, w), rel=1e-12)


def test_batched_fn_norm_matches_single():
    rng = np.random.default_rng(5)
    A, W, B = rng.normal(size=(3, 20, 64))
    W[:, :3] = 0.0  # constants
    W[:, 3], B[:, 3] = W[:, 4], B[:, 4]  # a coincident knot
    batch = fn_norm_of_net(A, W, B)
    assert batch.shape == (20,)
    assert np.allclose(batch, [fn_norm_of_net(A[i], W[i], B[i]) for i in range(20)], rtol=1e-12)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="equal shapes"):
        relu_net_to_pwl([1.0, 2.0], [1.0], [0.0], 0.0)
    with pytest.raises(ValueError, match="positive"):
        rescale_net([1.0], [1.0], [0.0], 0.0, [-1.0])
