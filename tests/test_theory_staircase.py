"""Staircase proposition, generalization ratio, multi-output, smooth denoiser, trained nets, CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest

from theory import bounds, multioutput as mo, staircase as sc
from theory.interpolation import lp_min_norm
from theory.norms import fn_norm, fn_norm_of_net
from theory.trained import FitConfig, FitProblem, fit_relu_nets


def test_hand_staircase_24():
    assert sc.standard_min_norm(4, 1.0, 0.25) == 24.0
    x = sc.intervals(4, 0.25, 0.75).ravel()
    assert lp_min_norm(x, np.repeat(np.arange(4.0), 2)).value == pytest.approx(24.0, rel=1e-9)
    assert fn_norm(sc.standard_pwl(4, 1.0, 0.25, 0.75)) == pytest.approx(24.0)


def test_standard_unequal_gaps_and_height():
    d = [0.3, 0.1, 0.5]
    x = sc.intervals(4, d, 0.6).ravel()
    assert lp_min_norm(x, 2.5 * np.repeat(np.arange(4.0), 2)).value == pytest.approx(
        sc.standard_min_norm(4, 2.5, d, 0.6), rel=1e-9)


@pytest.mark.parametrize("k,delta,L", [(3, 0.1, 1.0), (5, 0.5, 0.5), (8, 0.05, 0.95), (4, 1.0, 2.0)])
def test_composed_closed_form_equals_lp(k, delta, L):
    cf = sc.composed_min_norm(k, 1.0, delta, L)
    assert cf == pytest.approx((k - 2) / ((k - 2) * L + (k - 1) * delta), rel=1e-12)
    assert sc.composed_min_norm(k, 1.0, delta, L, method="lp") == pytest.approx(cf, rel=1e-7)
    assert sc.composed_min_norm(k, 1.0, delta, L, method="lp", valid="finite") == pytest.approx(cf, rel=1e-7)
    assert sc.composed_lower_bound(k, 1.0, delta, L) == pytest.approx(cf, rel=1e-12)


def test_composed_unequal_gaps_lp_above_lower_bound_and_closed_form_refuses():
    d = [0.3, 0.1, 0.5, 0.2]
    lp = sc.composed_min_norm(5, 1.0, d, 0.8, method="lp")
    assert lp >= sc.composed_lower_bound(5, 1.0, d, 0.8) - 1e-9
    with pytest.raises(ValueError, match="equal gaps"):
        sc.composed_min_norm(5, 1.0, d, 0.8)


def test_ratio_grows_without_bound():
    r = [sc.ratio(k, 1.0, 0.1, 0.9) for k in (3, 6, 12, 24)]
    assert all(b > a for a, b in zip(r, r[1:]))
    r = [sc.ratio(6, 1.0, d, 1.0) for d in (1.0, 0.3, 0.1, 0.03)]
    assert all(b > a for a, b in zip(r, r[1:])) and r[-1] > 10
    assert sc.ratio(32, 1.0, 0.05, 0.95) == pytest.approx(2 * 31 * (30 * .95 + 31 * .05) / (30 * .05))


def test_smooth_denoiser_band():
    for T in (1, 2, 3):
        beta = sc.smooth_band(0.05, 1.0, T)
        out = sc.smooth_denoiser(np.array([beta, 3 + beta, -2 - beta]), 1.0, T)
        assert np.allclose(out, [0.05, 3.05, -2.05], atol=1e-12)
    assert sc.smooth_band(0.05, 1.0, 1) < sc.smooth_band(0.05, 1.0, 3) < 0.5  # steeper -> wider band
    with pytest.raises(ValueError):
        sc.smooth_band(0.6)


def test_bad_geometry_raises():
    with pytest.raises(ValueError, match="gaps"):
        sc.intervals(3, [0.1], 1.0)
    with pytest.raises(ValueError, match="L"):
        sc.intervals(3, 0.1, 0.0)


def test_multioutput_separate_lp_and_labels_ratio():
    v = [1.0, -1.0, 2.0]
    assert mo.multi_composed_lp_separate(4, 1.0, 0.6, 0.4, v) == pytest.approx(
        mo.multi_composed_min_norm(4, 1.0, 0.6, 0.4, v, shared=False), rel=1e-7)
    assert mo.multi_standard_lp_separate(4, 1.0, 0.6, 0.4, v) == pytest.approx(
        mo.multi_standard_min_norm(4, 1.0, 0.6, 0.4, v, shared=False), rel=1e-7)
    assert bounds.labels_ratio(12.0, 0.8) == pytest.approx(225.0)
    assert bounds.rademacher_bound(2.0, 1.5, 36) == pytest.approx(1.0)


def test_trained_nets_approach_min_norm():
    xs, ys, _ = sc.staircase_data(4, 1.0, 0.5, 0.5, 6)
    fits = fit_relu_nets([FitProblem(xs, ys, "mse", 0.0, 1e-4), FitProblem(xs, ys, "band", 0.45, 3e-4)],
                         FitConfig(width=64, steps=3000, seed=0))
    assert fits[0].path_norm == pytest.approx(12.0, rel=0.1)
    assert fits[1].path_norm == pytest.approx(0.84, rel=0.1)
    assert fits[1].path_norm >= fn_norm_of_net(fits[1].a, fits[1].w, fits[1].b, fits[1].c) - 1e-12
    again = fit_relu_nets([FitProblem(xs, ys, "band", 0.45, 3e-4)], FitConfig(width=64, steps=50, seed=1))
    again2 = fit_relu_nets([FitProblem(xs, ys, "band", 0.45, 3e-4)], FitConfig(width=64, steps=50, seed=1))
    assert np.array_equal(again[0].a, again2[0].a)  # deterministic per seed


def test_cli_quick(tmp_path):
    out = tmp_path / "t.json"
    proc = subprocess.run([sys.executable, "-m", "theory", "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    recs = json.loads(out.read_text())
    assert len(recs) >= 10 and all(r["passed"] for r in recs)
    for r in recs:
        assert {"name", "statement", "closed_form", "convex", "trained", "rel_err", "tol", "passed"} <= set(r)
        assert sum(r[k] is not None for k in ("closed_form", "convex", "trained")) >= 2
    assert "wall time" in proc.stdout
