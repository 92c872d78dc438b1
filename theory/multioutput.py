"""Multi-output staircase: d outputs, valid set the lattice hZ^d, denoiser coordinate-wise rounding.

Target: on plateau I_i (geometry of :mod:`theory.staircase`, equal gaps delta, length L),
y(x) = i h v for a fixed integer direction v in Z^d. Two network families:

* ``shared=True``: one hidden layer, vector output weights a_j in R^d; cost
  0.5 sum(||a_j||^2 + w_j^2) whose minimum over rescalings is sum ||a_j||_2 |w_j|;
* ``shared=False``: d independent scalar networks; cost = sum of their scalar norms.

Standard: min cost = 2 (k-1) h ||v|| / delta  (||.||_2 shared, ||.||_1 separate). Each gap needs a
vector slope change of (h/delta) v and back; shared units pay ||Delta||_2 per knot, and projecting
f onto u = v/||v|| gives the matching lower bound through the scalar proposition.
Composed (coordinate-wise rounding, |f_j - i h v_j| < h/2 on I_i), assuming L |v_j| <= L + delta:
coordinate j needs slope s_j = max(0, ((k-1)|v_j| - 1) h) / ((k-1)(L+delta) - L) (the scalar
proposition with rise |v_j| h), attained by the line f = c + s relu(x) with s = (s_j sign v_j)_j,
cost ||s|| (2-norm shared, 1-norm separate). Lower bound (shared): u.f with u = s/||s|| is a scalar
network of no larger cost that must rise by ||s|| ((k-1)(L+delta) - L) between I_0 and I_{k-1}.
"""
from __future__ import annotations

import numpy as np

from .interpolation import lp_min_norm
from .staircase import gaps, intervals

__all__ = ["multi_standard_min_norm", "multi_composed_slopes", "multi_composed_min_norm",
           "multi_composed_lp_separate", "multi_standard_lp_separate", "multi_staircase_data"]


def _check(k, delta, L, v):
    v = np.asarray(v, np.float64).ravel()
    d = gaps(k, delta)
    if not np.allclose(d, d[0]):
        raise ValueError("multioutput: equal gaps required")
    return v, float(d[0])


def multi_standard_min_norm(k: int, h: float, delta: float, L: float, v, *, shared: bool = True) -> float:
    """2 (k-1) h ||v|| / delta (2-norm with shared units, 1-norm with separate networks)."""
    v, dl = _check(k, delta, L, v)
    return 2 * (k - 1) * h * float(np.linalg.norm(v, 2 if shared else 1)) / dl


def multi_composed_slopes(k: int, h: float, delta: float, L: float, v) -> np.ndarray:
    """Per-coordinate minimal slopes s_j (signed like v_j) of the composed line."""
    v, dl = _check(k, delta, L, v)
    P = L + dl
    if np.any(np.abs(v) * L > P * (1 + 1e-12)):
        raise ValueError("multioutput: closed form needs L |v_j| <= L + delta for every j")
    return np.sign(v) * np.maximum(0.0, ((k - 1) * np.abs(v) - 1) * h) / ((k - 1) * P - L)


def multi_composed_min_norm(k: int, h: float, delta: float, L: float, v, *, shared: bool = True) -> float:
    """||s||_2 (shared) or ||s||_1 (separate), s from :func:`multi_composed_slopes`."""
    return float(np.linalg.norm(multi_composed_slopes(k, h, delta, L, v), 2 if shared else 1))


def multi_composed_lp_separate(k: int, h: float, delta: float, L: float, v) -> float:
    """Sum over coordinates of the exact band LP (independent networks)."""
    x = intervals(k, delta, L).ravel()
    lv = np.repeat(np.arange(k), 2) * h
    return float(sum(lp_min_norm(x, lv * vj - h / 2, lv * vj + h / 2).value for vj in np.ravel(v)))


def multi_standard_lp_separate(k: int, h: float, delta: float, L: float, v) -> float:
    """Sum over coordinates of the exact interpolation LP at the interval ends."""
    x = intervals(k, delta, L).ravel()
    lv = np.repeat(np.arange(k), 2) * h
    return float(sum(lp_min_norm(x, lv * vj).value for vj in np.ravel(v)))


def multi_staircase_data(k: int, h: float, delta: float, L: float, v, n_per: int = 6):
    """x [k n_per] and Y [k n_per, d] = i h v on plateau i (interval ends included)."""
    iv = intervals(k, delta, L)
    x = (iv[:, :1] + L * np.linspace(0, 1, n_per)[None, :]).ravel()
    i = np.repeat(np.arange(k), n_per)
    return x, np.outer(i * h, np.asarray(v, np.float64))
