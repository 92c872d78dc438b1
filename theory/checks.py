"""The check suite behind ``python -m theory``: every number computed at least two independent ways.

Columns: ``closed_form`` (a formula from theory/README.md), ``convex`` (the HiGHS linear program of
:mod:`theory.interpolation`, or another independent numerical computation named in the statement),
``trained`` (path norm of a trained float64 network, :mod:`theory.trained`). ``rel_err`` is the
largest relative deviation of convex from closed form (tolerance ``tol``); trained networks are
compared with their own, looser tolerance ``tol_trained`` (``rel_err_trained``).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from . import bounds, multioutput as mo, staircase as sc
from .interpolation import closed_form_interpolation_norm, lp_interpolate, lp_min_norm
from .related import related_checks
from .norms import (eval_net, fn_norm, fn_norm_of_net, net_from_pwl, path_norm, pwl_from_slopes,
                    relu_net_to_pwl, rescale_net, weight_norm)
from .trained import FitConfig, FitProblem, fit_relu_nets

__all__ = ["run_checks"]

TOL_EXACT = 1e-6  # LP (HiGHS, ~1e-9 feasibility) against exact formulas
TOL_TRAINED = 0.10  # trained nets: finite weight decay and finite training

# geometry shared by the trained staircase fits (k plateaus, height h, gap D, length L)
K, H, D, L = 4, 1.0, 0.5, 0.5
MARGIN = 0.05  # composed-with-rounding fit: f must land within h/2 - MARGIN of i h
EPS, T_DEN = 0.05, 2
DM, LM = 0.6, 0.4  # multi-output geometry: L |v_j| <= L + delta for v = (1, -1, 2)  # smooth denoiser Pi_T: |Pi_T(f) - i h| <= EPS


def _rel(x: float | None, ref: float) -> float | None:
    if x is None:
        return None
    return abs(x - ref) / max(abs(ref), 1e-12)


def _rec(name, statement, closed, convex, trained=None, *, tol=TOL_EXACT, tol_trained=TOL_TRAINED,
         extra_ok=True, **extra) -> dict:
    ref = closed if closed is not None else convex
    rel = _rel(convex, ref) if closed is not None else None
    rel_t = _rel(trained, ref)
    ok = bool(extra_ok) and (rel is None or rel <= tol) and (rel_t is None or rel_t <= tol_trained)
    return dict(name=name, statement=statement, closed_form=closed, convex=convex, trained=trained,
                rel_err=rel, tol=tol if rel is not None else None, rel_err_trained=rel_t,
                tol_trained=tol_trained if rel_t is not None else None, passed=ok, **extra)


def _worst_rec(name, statement, closed: list[float], convex: list[float], extra_ok=True) -> dict:
    """Many cases in one record: sums in the columns, the worst per-case relative error as rel_err."""
    c, v = np.asarray(closed), np.asarray(convex)
    worst = float(np.max(np.abs(v - c) / np.maximum(np.abs(c), 1e-12)))
    rec = _rec(name, statement, float(c.sum()), float(v.sum()), extra_ok=extra_ok and worst <= TOL_EXACT)
    rec["rel_err"] = worst
    return rec


def _pinned_lp(a, w, b, c) -> float:
    """LP min path norm of the exact function of a net: values pinned at its knots and +-50 beyond."""
    p = relu_net_to_pwl(a, w, b, c)
    pts = np.concatenate([p.knots, [p.knots[0] - 50.0, p.knots[-1] + 50.0]])
    return lp_min_norm(pts, eval_net(a, w, b, c, pts), knots=p.knots).value


def _hand_cases() -> list[dict]:
    out = []
    cases = [  # name, statement, (a, w, b, c), hand value
        ("R_single_ramp", "R(relu(x)) = max(1, |0 + 1|) = 1", ([1.0], [1.0], [0.0], 0.0), 1.0),
        ("R_abs", "R(|x - 1|) = max(2, |-1 + 1|) = 2", ([1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], 0.0), 2.0),
        ("R_linear_boundary", "R(x) on all of R = max(0, |1 + 1|) = 2 (boundary term)",
         ([1.0, -1.0], [1.0, -1.0], [0.0, 0.0], 0.0), 2.0),
        ("R_boundary_dominates", "R(3x + clip(x,0,1)) = max(2, |3 + 3|) = 6",
         ([3.0, -3.0, 1.0, -1.0], [1.0, -1.0, 1.0, 1.0], [0.0, 0.0, 0.0, -1.0], 0.0), 6.0),
    ]
    for name, st, net, hand in cases:
        formula = fn_norm_of_net(*(np.asarray(v) for v in net[:3]), net[3])
        lp = _pinned_lp(*(np.asarray(v, np.float64) for v in net[:3]), net[3])
        out.append(_rec(name, st + "; convex: LP over units at the knots, values pinned at +-50",
                        hand, lp, extra_ok=abs(formula - hand) < 1e-12, formula=formula))
    xs = np.linspace(-1.0, 4.0, 6)
    closed = min(max(abs(1 - sl) + abs(sr - 1), abs(sl + sr)) for sl in (0.0, 1.0) for sr in (0.0, 1.0))
    out.append(_rec("bounded_domain_pitfall",
                    "f(x) = x seen only on [-1, 4]: min R = min over tails = 1 (not 2); LP without far points",
                    closed, lp_interpolate(xs, xs).value))
    return out


def _random_net_checks(rng, n_nets: int) -> list[dict]:
    rs, lps, cons, fn_err, wn_err = [], [], [], 0.0, 0.0
    for _ in range(n_nets):
        m = int(rng.integers(3, 12))
        a, w, b = rng.normal(size=(3, m))
        c = float(rng.normal())
        rs.append(fn_norm_of_net(a, w, b, c))
        lps.append(_pinned_lp(a, w, b, c))
        A, W, B, C = net_from_pwl(relu_net_to_pwl(a, w, b, c))
        cons.append(weight_norm(A, W))
        xs = np.linspace(-20, 20, 801)
        fn_err = max(fn_err, float(np.max(np.abs(eval_net(A, W, B, C, xs) - eval_net(a, w, b, c, xs)))))
        wn_err = max(wn_err, abs(weight_norm(A, W) - path_norm(A, W)))
    rs, lps, cons = map(np.array, (rs, lps, cons))
    return [
        _rec("savarese_random_nets", f"R formula == LP min path norm of the same function, {n_nets} random nets "
             "(sum reported; rel_err = worst net)", float(rs.sum()), float(lps.sum()),
             extra_ok=float(np.max(np.abs(lps - rs) / rs)) <= TOL_EXACT),
        _rec("constructive_net", "net_from_pwl: weight norm == path norm == R(f), same function "
             "(convex column: weight norm of the constructed net)", float(rs.sum()), float(cons.sum()),
             extra_ok=fn_err < 1e-8 and wn_err < 1e-10 and float(np.max(np.abs(cons - rs) / rs)) < 1e-10,
             max_function_error=fn_err),
    ]


def _rescaling_check(rng) -> dict:
    a, w, b = rng.normal(size=(3, 16))
    s = np.exp(rng.normal(size=16))
    a2, w2, b2, _ = rescale_net(a, w, b, 0.3, s)
    invariant = (abs(path_norm(a2, w2) - path_norm(a, w)) < 1e-12
                 and abs(fn_norm_of_net(a2, w2, b2, .3) - fn_norm_of_net(a, w, b, .3)) < 1e-10)
    numeric = sum(minimize_scalar(lambda u, ai=ai, wi=wi: 0.5 * (ai ** 2 * math.exp(-2 * u) + wi ** 2 * math.exp(2 * u)),
                                  bracket=(-3, 3), tol=1e-12).fun for ai, wi in zip(a, w))
    return _rec("rescaling_amgm", "min over rescalings of 0.5 sum(a^2+w^2) = sum|a w| (AM-GM; convex: 1-D "
                "minimization per unit); path norm and R invariant", path_norm(a, w), numeric,
                extra_ok=invariant)


def _interp_checks(rng, n_sets: int) -> list[dict]:
    r0 = np.random.default_rng(0)
    x = np.sort(r0.uniform(0, 3, 7))
    y = r0.normal(size=7)
    out = [_rec("interp_secant_tv", "7 pts (default_rng(0)): min R-bar (free linear unit) = TV of secant "
                "slopes = 53.1249", closed_form_interpolation_norm(x, y, linear_unit=True),
                lp_interpolate(x, y, linear_unit=True).value)]
    cfs, lps = [], []
    for _ in range(n_sets):
        n = int(rng.integers(3, 15))
        xr = np.sort(rng.uniform(-3, 3, n))
        yr = rng.normal(size=n) + rng.normal() * xr  # a random trend makes the boundary term bind
        for lin in (True, False):
            cfs.append(closed_form_interpolation_norm(xr, yr, linear_unit=lin))
            lps.append(lp_interpolate(xr, yr, linear_unit=lin).value)
    out.append(_worst_rec("interp_random", f"{n_sets} random data sets, with and without linear unit: LP == "
                          "closed form (sums reported; rel_err = worst case)", cfs, lps))
    return out


def _interp_trend_data():
    x = np.linspace(-1, 1, 9)
    y = 2 * x + 0.15 * np.sin(5 * x)
    return x, y


def run_checks(quick: bool = False, seed: int = 0) -> list[dict]:
    """Run every check; returns the JSON-ready list of records (see theory/README.md)."""
    rng = np.random.default_rng(seed)
    recs = _hand_cases()
    recs += _random_net_checks(rng, 20 if quick else 100)
    recs.append(_rescaling_check(rng))
    recs += _interp_checks(rng, 10 if quick else 50)

    # --- trained networks: one batched float64 run -------------------------------------------
    xs, ys, _ = sc.staircase_data(K, H, D, L, 6)
    xi, yi = _interp_trend_data()
    v = np.array([1.0, -1.0, 2.0])
    xm, ym = mo.multi_staircase_data(K, H, DM, LM, v, 6)
    probs = [FitProblem(xs, ys, "mse", 0.0, 1e-4), FitProblem(xs, ys, "band", H / 2 - MARGIN, 3e-4),
             FitProblem(xs, ys, "denoised", EPS, 3e-4, h=H, T=T_DEN), FitProblem(xi, yi, "mse", 0.0, 1e-4),
             FitProblem(xm, ym, "band", H / 2 - MARGIN, 3e-4)]
    fits = fit_relu_nets(probs, FitConfig(width=64, steps=3000 if quick else 8000, lr=2e-2, seed=seed))
    tol_t = 0.25 if quick else TOL_TRAINED

    # standard staircase
    recs.append(_rec("staircase_standard_hand", "k=4 plateaus (3 rises), h=1, gaps 0.25: min R = 2h sum 1/delta = 24",
                     24.0, lp_min_norm(sc.intervals(4, .25, .75).ravel(), np.repeat(np.arange(4.), 2)).value,
                     extra_ok=sc.standard_min_norm(4, 1, .25) == 24.0 and fn_norm(sc.standard_pwl(4, 1, .25, .75)) == 24.0))
    recs.append(_rec("staircase_standard", f"k={K}, h={H}, delta={D}, L={L}: 2h(k-1)/delta; trained: mse + weight decay",
                     sc.standard_min_norm(K, H, D, L), lp_min_norm(xs, ys).value, fits[0].path_norm, tol_trained=tol_t,
                     trained_max_residual=fits[0].max_violation))
    d_uneq = [0.3, 0.1, 0.5, 0.2]
    recs.append(_rec("staircase_standard_unequal", "unequal gaps (.3,.1,.5,.2), L=.8: 2h sum 1/delta_i",
                     sc.standard_min_norm(5, 1.0, d_uneq, .8),
                     lp_min_norm(sc.intervals(5, d_uneq, .8).ravel(), np.repeat(np.arange(5.), 2)).value))
    # composed with rounding
    b_r = H / 2 - MARGIN
    recs.append(_rec("staircase_composed_round", f"k={K}, h={H}, delta={D}, L={L}, band h/2-{MARGIN}: "
                     "((k-1)h - 2 beta)/((k-1)(L+delta) - L); trained: band hinge (surrogate of rounding)",
                     sc.composed_min_norm(K, H, D, L, beta=b_r), sc.composed_min_norm(K, H, D, L, beta=b_r, method="lp"),
                     fits[1].path_norm, tol_trained=tol_t, rounding_limit=sc.composed_min_norm(K, H, D, L),
                     trained_max_residual=fits[1].max_violation))
    grid = [(k, d, lq) for k in (3, 5, 9) for d in (0.05, 0.3, 1.0) for lq in (0.5, 1.0)]
    fin_ok = abs(sc.composed_min_norm(9, 1, .05, 1, method="lp", valid="finite") - sc.composed_min_norm(9, 1, .05, 1)) < 1e-7
    recs.append(_worst_rec("composed_round_grid", f"rounding (beta=h/2), {len(grid)} geometries: closed form == LP "
                           "(sums reported; rel_err = worst case); lattice and finite valid sets agree",
                           [sc.composed_min_norm(k, 1, d, lq) for k, d, lq in grid],
                           [sc.composed_min_norm(k, 1, d, lq, method="lp") for k, d, lq in grid], extra_ok=fin_ok))
    # smooth denoiser
    beta_s = sc.smooth_band(EPS, H, T_DEN)
    recs.append(_rec("staircase_composed_smooth", f"smooth denoiser Pi_T (T={T_DEN}), |Pi_T(f) - ih| <= {EPS} <=> "
                     f"|f - ih| <= beta = {beta_s:.4f}: closed form with beta; trained through Pi_T",
                     sc.composed_min_norm(K, H, D, L, beta=beta_s),
                     sc.composed_min_norm(K, H, D, L, beta=beta_s, method="lp"), fits[2].path_norm,
                     tol_trained=tol_t, trained_max_residual=fits[2].max_violation))
    # ratio
    kx, dx, lx = 32, 0.05, 0.95
    r_cf = sc.ratio(kx, 1, dx, lx)
    iv = sc.intervals(kx, dx, lx).ravel()
    r_lp = lp_min_norm(iv, np.repeat(np.arange(kx, dtype=float), 2)).value / sc.composed_min_norm(kx, 1, dx, lx, method="lp")
    recs.append(_rec("staircase_ratio", f"k={kx}, delta={dx}, L={lx}: ratio 2(k-1)((k-2)L+(k-1)delta)/((k-2)delta) > 10",
                     r_cf, r_lp, extra_ok=r_cf > 10))
    # generalization
    rs_cf = sc.standard_min_norm(K, H, D, L)
    rc_cf = sc.composed_min_norm(K, H, D, L, beta=b_r)
    rs_lp, rc_lp = lp_min_norm(xs, ys).value, sc.composed_min_norm(K, H, D, L, beta=b_r, method="lp")
    R_x = math.hypot(1.0, (xs.max() - xs.min()) / 2)
    recs.append(_rec("labels_ratio", "labels for equal Rademacher bounds 2 B R_x/sqrt(n): n_std/n_comp = "
                     "(B_std/B_comp)^2 (staircase_standard vs staircase_composed_round)",
                     bounds.labels_ratio(rs_cf, rc_cf), bounds.labels_ratio(rs_lp, rc_lp),
                     bounds.labels_ratio(fits[0].path_norm, fits[1].path_norm), tol_trained=2 * tol_t,
                     bound_standard_n100=bounds.rademacher_bound(rs_cf, R_x, 100),
                     bound_composed_n100=bounds.rademacher_bound(rc_cf, R_x, 100)))
    xr = np.linspace(-1, 1, 64)
    mc = bounds.empirical_rademacher_mc(xr, draws=500 if quick else 2000, seed=seed)
    mc4 = bounds.empirical_rademacher_mc(np.linspace(-1, 1, 256), draws=500 if quick else 2000, seed=seed + 1)
    recs.append(_rec("rademacher_rate", "Monte Carlo Rademacher complexity of the unit ball (n=64 vs 256): ratio "
                     "~ sqrt(4) = 2, and below the bound 2 R_x/sqrt(n)", 2.0, mc / mc4, tol=0.1,
                     extra_ok=mc <= bounds.rademacher_bound(1, math.sqrt(2), 64), mc_n64=mc,
                     bound_n64=bounds.rademacher_bound(1, math.sqrt(2), 64)))
    # interpolation without linear unit, trained
    recs.append(_rec("interp_boundary_trained", "9 pts y = 2x + .15 sin 5x: min R (no linear unit) = "
                     "max(V, (V + |s_1 + s_n-1|)/2); trained: mse + weight decay",
                     closed_form_interpolation_norm(xi, yi), lp_interpolate(xi, yi).value, fits[3].path_norm,
                     tol_trained=tol_t, trained_max_residual=fits[3].max_violation))
    # multi-output
    recs.append(_rec("multioutput_separate", f"d=3 outputs v={v.tolist()}, delta={DM}, L={LM}, coordinate-wise rounding, separate nets: "
                     "ratio 2(k-1)h|v|_1/delta / |s|_1", mo.multi_standard_min_norm(K, H, DM, LM, v, shared=False)
                     / mo.multi_composed_min_norm(K, H, DM, LM, v, shared=False),
                     mo.multi_standard_lp_separate(K, H, DM, LM, v) / mo.multi_composed_lp_separate(K, H, DM, LM, v)))
    s_sh = np.linalg.norm(np.sign(v) * np.maximum(0, ((K - 1) * np.abs(v) * H - 2 * b_r)) / ((K - 1) * (LM + DM) - LM))
    recs.append(_rec("multioutput_shared", "d=3, shared hidden units, band h/2-margin: min sum ||a_j|| |w_j| = ||s||_2; "
                     "trained: vector-output band hinge", float(s_sh), None, fits[4].path_norm, tol_trained=tol_t,
                     standard_shared=mo.multi_standard_min_norm(K, H, DM, LM, v)))
    # related fine-tuning methods (SMART, linearized fine-tuning, RadReg): theory/related.py
    recs += related_checks(rng, quick, _rec, _worst_rec)
    return recs
