"""Theory checks of the related fine-tuning methods (docs/related-methods.md §1-§3), two ways each.

1. SMART's worst case on a 1-D piecewise-linear f: max over x and |δ| <= ε of (f(x+δ) - f(x))^2
   is ε^2 (max slope)^2 when every linear piece is longer than 2ε; computed in closed form and by
   SMART's own one-step perturbation (``composedft.smart``) at the middle of every piece.
2. Linearized fine-tuning of a two-layer ReLU net: the continuous part of the Taylor model has
   kinks only at θ0's knots T (docs/related-methods.md §3). On staircase data (interval end
   points) with T inside the gaps, the least R of an interpolant with kinks in T is
   Σ_gaps 2h / (max T_i - min T_i) (infinite when a gap holds fewer than two knots), which is
   at least the free-knot minimum 2h(k-1)/δ; closed form against the HiGHS LP restricted to T.
3. RadReg: orthonormal features give R̂ = B/sqrt(m); random features satisfy R̂ <= Jensen's
   bound; closed form / enumeration against Monte Carlo (``composedft.radreg``).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from composedft.radreg import jensen_bound, rademacher_linear, rademacher_linear_exact, rademacher_signs
from composedft.smart import SmartConfig, adversarial_perturbation, smoothness_term

from . import staircase as sc
from .interpolation import lp_min_norm
from .norms import relu_net_to_pwl

__all__ = ["smart_worst_case", "smart_worst_case_by_ascent", "fixed_knot_staircase_min_norm",
           "fixed_knot_staircase_lp", "related_checks"]


def smart_worst_case(slopes: np.ndarray, eps: float) -> float:
    """ε^2 max_i s_i^2: |f(x+δ) - f(x)| <= |δ| max|s|, with equality inside the steepest piece."""
    return float(eps ** 2 * np.max(np.asarray(slopes) ** 2))


def smart_worst_case_by_ascent(a, w, b, c, eps: float, seed: int = 0) -> tuple[float, float]:
    """max over piece midpoints of SMART's one-step term, and the shortest piece length.

    The perturbation is SMART's paper-mode step (normalized ascent, then projection) from a small
    random start; at a point at least ε from every kink it lands on ±ε, and either sign gives
    ε^2 s^2 there.
    """
    pwl = relu_net_to_pwl(a, w, b, c)
    t = pwl.knots
    mids = np.concatenate([[t[0] - 1.0], (t[:-1] + t[1:]) / 2, [t[-1] + 1.0]])
    net = {k: torch.as_tensor(np.asarray(v, float)) for k, v in dict(a=a, w=w, b=b).items()}
    fn = lambda x: torch.relu(x.unsqueeze(-1) * net["w"] + net["b"]) @ net["a"] + float(c)  # noqa: E731
    x = torch.as_tensor(mids)
    cfg = SmartConfig(eps=eps, init_std=eps / 10, step_size=eps)
    delta = adversarial_perturbation(fn, x, fn(x), cfg, example_dims=1, generator=torch.Generator().manual_seed(seed))
    return float(smoothness_term(fn, x, fn(x), delta).max()), float(np.diff(t).min()) if t.size > 1 else math.inf


def fixed_knot_staircase_min_norm(k: int, h: float, delta: float, L: float, knots: np.ndarray) -> float:
    """Least R of a continuous interpolant of the staircase end points with kinks only in ``knots``.

    Requires every knot to lie in a closed gap [end of interval i, start of interval i+1] (then f
    is linear, hence flat, on each interval, and flat on both tails). In gap i the function must
    climb h between its first and last knot with zero slope outside: the cheapest is one ramp,
    cost 2h/(max T_i - min T_i). Fewer than two knots in a gap: no interpolant (inf).
    """
    iv = sc.intervals(k, delta, L)
    t = np.asarray(knots, float)
    total = 0.0
    covered = np.zeros(t.size, bool)
    for i in range(k - 1):
        inside = (t >= iv[i, 1]) & (t <= iv[i + 1, 0])
        covered |= inside
        ti = t[inside]
        if np.unique(ti).size < 2:
            return math.inf
        total += 2 * h / (ti.max() - ti.min())
    if not covered.all():
        raise ValueError("fixed_knot_staircase_min_norm: every knot must lie in a gap")
    return total


def fixed_knot_staircase_lp(k: int, h: float, delta: float, L: float, knots: np.ndarray) -> float:
    """The same minimum by the HiGHS LP of theory.interpolation restricted to ``knots`` (inf if infeasible)."""
    iv = sc.intervals(k, delta, L)
    try:
        return lp_min_norm(iv.ravel(), np.repeat(np.arange(k, dtype=float) * h, 2), knots=knots).value
    except RuntimeError:
        return math.inf


def _gap_knots(rng: np.random.Generator, k: int, delta: float, L: float, per_gap: int) -> np.ndarray:
    iv = sc.intervals(k, delta, L)
    return np.concatenate([rng.uniform(iv[i, 1], iv[i + 1, 0], per_gap) for i in range(k - 1)])


def related_checks(rng: np.random.Generator, quick: bool, rec, worst_rec) -> list[dict]:
    """The records of this module, built with ``theory.checks``' record helpers ``rec``/``worst_rec``."""
    out = []
    # 1. SMART worst case = eps^2 max slope^2
    closed, ascent, ok = [], [], True
    for _ in range(5 if quick else 20):
        m = 6
        a, w = rng.normal(size=m), rng.normal(size=m)
        b = -w * rng.uniform(-2, 2, size=m)
        pwl = relu_net_to_pwl(a, w, b, 0.3)
        eps = 0.1 * float(np.diff(pwl.knots).min())  # every piece longer than 2 eps
        val, _ = smart_worst_case_by_ascent(a, w, b, 0.3, eps, seed=int(rng.integers(1 << 30)))
        closed.append(smart_worst_case(pwl.slopes, eps))
        ascent.append(val)
    out.append(worst_rec("smart_worst_case_1d", f"SMART on 1-D piecewise-linear f ({len(closed)} random nets): "
                         "max_x max_|d|<=eps (f(x+d)-f(x))^2 = eps^2 max slope^2; closed form vs SMART's one "
                         "paper-mode step at every piece's midpoint", closed, ascent, extra_ok=ok))
    # 2. linearized fine-tuning: kinks frozen at theta0's knots
    k, h, d, L = 4, 1.0, 0.5, 1.0
    cf, lp, above = [], [], True
    for _ in range(3 if quick else 10):
        T = _gap_knots(rng, k, d, L, int(rng.integers(2, 5)))
        cf.append(fixed_knot_staircase_min_norm(k, h, d, L, T))
        lp.append(fixed_knot_staircase_lp(k, h, d, L, T))
        above &= cf[-1] >= sc.standard_min_norm(k, h, d, L) * (1 - 1e-12)
    one = _gap_knots(rng, k, d, L, 2)
    one = np.delete(one, 0)  # the first gap keeps a single knot: no continuous interpolant
    infeasible = math.isinf(fixed_knot_staircase_min_norm(k, h, d, L, one)) and math.isinf(fixed_knot_staircase_lp(k, h, d, L, one))
    out.append(worst_rec("linearized_fixed_knots", f"Taylor model of a ReLU net: kinks frozen at theta0's knots T; "
                         f"staircase k={k}, delta={d}, L={L}, T in the gaps ({len(cf)} draws): min R = sum 2h/(max T_i - "
                         "min T_i) >= 2h(k-1)/delta (free knots); closed form vs LP on T; one knot in a gap: "
                         "infeasible both ways", cf, lp, extra_ok=above and infeasible))
    # 3. RadReg: orthonormal features and Jensen
    m, B = 8, 1.5
    q, _ = np.linalg.qr(rng.normal(size=(12, m)))
    feats = torch.as_tensor(q.T)
    mc = float(rademacher_linear(feats, rademacher_signs(64, m, torch.Generator().manual_seed(int(rng.integers(1 << 30)))), B))
    rand = torch.as_tensor(rng.normal(size=(10, 3)))
    jensen_ok = float(rademacher_linear_exact(rand)) < float(jensen_bound(rand))
    out.append(rec("radreg_orthonormal", f"RadReg, linear heads |v| <= {B}, m={m} orthonormal features: R = B/sqrt(m) "
                   "(Monte Carlo over 64 sign vectors is exact here); random features: exact enumeration < Jensen "
                   "bound (B/m) sqrt(sum |h_j|^2)", B / math.sqrt(m), mc, extra_ok=jensen_ok))
    return out
