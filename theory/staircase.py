"""Staircase targets: minimal norm of the standard predictor versus the composed base predictor.

Geometry (used by every function here and by the ReLU simulation):
    k plateaus i = 0, ..., k-1; plateau i has height i*h on the closed interval
    I_i = [x_i, x_i + L] with x_0 = 0 and x_{i+1} = x_i + L + delta_i (gap delta_i > 0 between
    I_i and I_{i+1}). With equal gaps, I_i = [i (L + delta), i (L + delta) + L].

Proposition (our formalization of "the complexity gap can be arbitrarily large").
Let k >= 2, h > 0, L > 0, delta_i > 0, norms R as in :mod:`theory.norms` (free biases).
  (a) Standard:  min { R(f) : f = i h on I_i for all i } = 2 h sum_i 1/delta_i.
  (b) Composed with rounding Pi(y) = h round(y / h) (valid outputs hZ, or only {0, ..., (k-1)h}):
      Pi(f) = i h on I_i  <=>  |f - i h| < h/2 on I_i.  More generally for an acceptance band of
      half-width beta (a smooth denoiser, below) and equal gaps, if 2 beta (L + delta) >= h L,
          inf { R(f) : |f - i h| <= beta on I_i } = max(0, (k-1) h - 2 beta) / ((k-1)(L + delta) - L).
      For rounding (beta = h/2) this is (k-2) h / ((k-2) L + (k-1) delta) <= h / (L + delta); the
      infimum is over the open band and is attained only on its closure.
  (c) Ratio (a)/(b) = 2 (k-1) ((k-2) L + (k-1) delta) / ((k-2) delta) >= 2 (k-1) L / delta, which
      tends to infinity as delta -> 0 or k -> infinity.
Proof sketch. (a) f' = 0 inside each I_i (L > 0); across gap i, f rises by h over width delta_i,
so f' >= h/delta_i somewhere there and must return to 0 on both sides: int_gap |f''| >= 2h/delta_i.
Summing, int|f''| >= 2h sum 1/delta_i and R >= int|f''|. The linear ramp interpolant, flat at
both infinities, attains it (boundary term 0). (b) Lower bound: R(f) >= sup |f'| for every f
(if f'(x) lies between the tail slopes, |f'(x)| <= |f'(-inf)| + |f'(+inf)| <= R; otherwise
int|f''| >= 2|f'(x)| - |f'(-inf)| - |f'(+inf)| and R >= the mean of the two terms >= |f'(x)|).
f <= beta at the right end of I_0 and f >= (k-1) h - beta at the left end of I_{k-1}, so by the
mean value theorem sup f' >= ((k-1) h - 2 beta) / ((k-1)(L+delta) - L). Upper bound: the line of
that slope s through (L, beta) meets every band when 2 beta (L+delta) >= h L (the constraints of
the line are linear in i; the binding ones are i = 0 and i = k-1), and f = c + s relu(x) (left
tail flattened left of I_0) has int|f''| = s = |f'(-inf) + f'(+inf)|, so R = s.
For unequal gaps, :func:`composed_lower_bound` gives the pairwise bound and :func:`composed_min_norm`
with ``method="lp"`` the exact value.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .interpolation import lp_min_norm
from .norms import PWL, pwl_from_slopes

__all__ = [
    "gaps", "intervals", "standard_min_norm", "standard_pwl", "composed_min_norm",
    "composed_lower_bound", "composed_bands", "staircase_data", "smooth_denoiser",
    "smooth_band", "ratio",
]


def gaps(k: int, delta: float | Sequence[float]) -> np.ndarray:
    """The k-1 gap widths (a scalar means equal gaps). Raises ValueError on bad input."""
    if int(k) != k or k < 1:
        raise ValueError(f"staircase: k (number of plateaus) must be a positive integer, got {k}")
    d = np.broadcast_to(np.asarray(delta, np.float64), (k - 1,)) if np.ndim(delta) == 0 \
        else np.asarray(delta, np.float64)
    if d.shape != (k - 1,):
        raise ValueError(f"staircase: need k-1 = {k - 1} gaps, got {d.shape}")
    if np.any(d <= 0):
        raise ValueError("staircase: gaps delta must be positive")
    return np.array(d)


def intervals(k: int, delta, L: float = 1.0) -> np.ndarray:
    """[k, 2] array of plateau intervals [x_i, x_i + L], x_0 = 0, x_{i+1} = x_i + L + delta_i."""
    if not L > 0:
        raise ValueError(f"staircase: interval length L must be positive, got {L}")
    d = gaps(k, delta)
    left = np.concatenate([[0.0], np.cumsum(L + d)])
    return np.stack([left, left + L], axis=1)


def standard_min_norm(k: int, h: float, delta, L: float = 1.0) -> float:
    """Part (a): 2 h sum_i 1/delta_i (independent of L > 0). Example: k=4, h=1, delta=.25 -> 24."""
    intervals(k, delta, L)  # validates
    return float(2.0 * abs(h) * np.sum(1.0 / gaps(k, delta)))


def standard_pwl(k: int, h: float, delta, L: float = 1.0) -> PWL:
    """The minimal-norm standard predictor: linear ramps across the gaps, flat elsewhere."""
    iv = intervals(k, delta, L)
    knots = np.column_stack([iv[:-1, 1], iv[1:, 0]]).ravel()  # ramp start/end per gap
    d = gaps(k, delta)
    slopes = np.zeros(knots.size + 1)
    slopes[1:-1:2] = h / d
    return pwl_from_slopes(knots, slopes, 0.0)


def composed_bands(k: int, h: float, beta: float, valid: str = "lattice") -> tuple[np.ndarray, np.ndarray]:
    """Per-plateau acceptance band [i h - beta, i h + beta].

    ``valid="finite"`` means the denoiser only outputs {0, ..., (k-1) h}: the bottom plateau's
    band is then open below and the top one's open above (this does not change the minimum).
    """
    lv = np.arange(k) * h
    lo, hi = lv - beta, lv + beta
    if valid == "finite":
        lo[0], hi[-1] = -np.inf, np.inf
    elif valid != "lattice":
        raise ValueError(f"composed_bands: valid must be 'lattice' or 'finite', got {valid!r}")
    return lo, hi


def composed_lower_bound(k: int, h: float, delta, L: float = 1.0, beta: float | None = None) -> float:
    """max_{i<j} ((j-i) h - 2 beta) / (x_j - x_i - L): a lower bound on the composed min norm.

    Valid for any gaps (R(f) >= sup|f'| and the mean value theorem between I_i and I_j); equal to
    the minimum for equal gaps when 2 beta (L + delta) >= h L.
    """
    beta = h / 2 if beta is None else beta
    iv = intervals(k, delta, L)
    i, j = np.triu_indices(k, 1)
    vals = ((j - i) * h - 2 * beta) / (iv[j, 0] - iv[i, 1])
    return float(max(0.0, vals.max())) if vals.size else 0.0


def composed_min_norm(k: int, h: float, delta, L: float = 1.0, *, beta: float | None = None,
                      method: str = "closed", valid: str = "lattice") -> float:
    """Part (b): inf R(f) over base predictors f whose denoised output reproduces the staircase.

    Args:
        k, h, delta, L: the geometry in the module docstring (delta scalar or k-1 gaps).
        beta: half-width of the acceptance band |f - i h| <= beta on I_i. Default h/2 (rounding
            to the nearest multiple of h); use :func:`smooth_band` for the smooth denoiser.
        method: "closed" (equal gaps and 2 beta (L+delta) >= h L only; else ValueError) or
            "lp" (exact for any geometry: LP with the band constraints at the 2k interval ends,
            which suffice since the band is convex and the knots can sit at the interval ends).
        valid: "lattice" (hZ) or "finite" ({0, ..., (k-1) h}); same value, see the docstring.
    """
    beta = h / 2 if beta is None else float(beta)
    if not 0 <= beta:
        raise ValueError(f"composed_min_norm: beta must be >= 0, got {beta}")
    iv = intervals(k, delta, L)
    if method == "lp":
        lo, hi = composed_bands(k, h, beta, valid)
        x = iv.ravel()
        return lp_min_norm(x, np.repeat(lo, 2), np.repeat(hi, 2)).value
    if method != "closed":
        raise ValueError(f"composed_min_norm: method must be 'closed' or 'lp', got {method!r}")
    d = gaps(k, delta)
    if k < 2:
        return 0.0
    if not np.allclose(d, d[0]):
        raise ValueError("composed_min_norm: the closed form needs equal gaps; use method='lp'")
    P = L + d[0]
    if 2 * beta * P < h * L * (1 - 1e-12):
        raise ValueError("composed_min_norm: closed form needs 2 beta (L+delta) >= h L; use method='lp'")
    return max(0.0, (k - 1) * h - 2 * beta) / ((k - 1) * P - L)


def ratio(k: int, h: float, delta, L: float = 1.0) -> float:
    """Part (c): standard / composed (rounding) = 2(k-1)((k-2)L + (k-1)delta) / ((k-2) delta)."""
    return standard_min_norm(k, h, delta, L) / composed_min_norm(k, h, delta, L)


def staircase_data(k: int, h: float, delta, L: float = 1.0, n_per: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n_per evenly spaced points per plateau, ends included. Returns x, y = i h, plateau index i."""
    if n_per < 2:
        raise ValueError("staircase_data: n_per must be >= 2 (both interval ends are used)")
    iv = intervals(k, delta, L)
    u = np.linspace(0.0, 1.0, n_per)
    x = (iv[:, :1] + L * u[None, :]).ravel()
    idx = np.repeat(np.arange(k), n_per)
    return x, idx * h, idx


def smooth_denoiser(y, h: float = 1.0, T: int = 2):
    """Pi_T = g o ... o g (T times), g(y) = y - h/(2 pi) sin(2 pi y / h).

    A smooth, monotone (g' = 1 - cos >= 0) stand-in for a learned denoiser onto hZ: every i h is
    a super-attracting fixed point, g(y + h) = g(y) + h, and Pi_T -> rounding as T grows. Works on
    numpy arrays and torch tensors.
    """
    mod = np if isinstance(y, (np.ndarray, float, int)) else __import__("torch")
    for _ in range(T):
        y = y - h / (2 * math.pi) * mod.sin(2 * math.pi * y / h)
    return y


def smooth_band(eps: float, h: float = 1.0, T: int = 2) -> float:
    """beta with Pi_T(i h + beta) = i h + eps: |Pi_T(f) - i h| <= eps  <=>  |f - i h| <= beta.

    Exact by monotonicity, oddness about each i h and h-equivariance of Pi_T (bisection to 1e-15).
    """
    if not 0 < eps < h / 2:
        raise ValueError(f"smooth_band: need 0 < eps < h/2, got {eps}")
    lo, hi = 0.0, h / 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if smooth_denoiser(np.float64(mid), h, T) <= eps:
            lo = mid
        else:
            hi = mid
    return lo
