"""Minimal-norm fitting of 1-D data as a linear program over ReLU units at candidate knots.

The convex program. Given candidate knots t_1 < ... < t_K, the network

    f(x) = c + v x + sum_i r_i relu(x - t_i) + sum_i l_i relu(t_i - x)

(right-facing units r_i, left-facing units l_i, each of path norm |r_i|, |l_i|; an optional
free linear unit v) is fitted under constraints lo_j <= f(x_j) <= hi_j by

    minimize  sum_i rho_i (|r_i| + |l_i|)    (rho_i = 1, or sqrt(1 + t_i^2) with biases regularized)

solved exactly by scipy's HiGHS. With rho = 1 the optimum is the least path norm over networks
with knots in {t_i}, which by Savarese et al. (2019) equals min R(f). Knots at the data points
suffice: replacing any feasible f by the linear spline through its values at the data points,
with f's own tail slopes, lowers int|f''| (secant slopes are averages of f') and keeps the
boundary term. This is *not* the closed-form formula: the LP never evaluates R.

Bounded-domain pitfall (docs/method.md §4.1): the LP only sees the constraint points. f(x) = x
constrained on [-1, 4] costs 1 (one unit kinked at -1), not R(x) = 2; to pin a function on all of
R add constraint points far outside (``far_points``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog

from .norms import PWL, pwl_from_slopes

__all__ = ["LPResult", "lp_min_norm", "lp_interpolate", "secant_slopes",
           "closed_form_interpolation_norm"]


@dataclass(frozen=True)
class LPResult:
    """Optimal value and the optimal network of :func:`lp_min_norm`."""

    value: float
    knots: np.ndarray
    right: np.ndarray  # r_i
    left: np.ndarray  # l_i
    linear: float  # v (0 without a linear unit)
    const: float  # c

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        t = self.knots
        return (self.const + self.linear * x + np.maximum(np.subtract.outer(x, t), 0) @ self.right
                + np.maximum(-np.subtract.outer(x, t), 0) @ self.left)

    def to_net(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """The LP solution as (a, w, b, c) in the f = sum a relu(w x + b) + c convention (|w| = 1)."""
        if self.linear != 0:
            raise ValueError("LPResult.to_net: a free linear unit has no ReLU form")
        t = self.knots
        a = np.concatenate([self.right, self.left])
        w = np.concatenate([np.ones_like(t), -np.ones_like(t)])
        return a, w, -w * np.concatenate([t, t]), self.const

    def to_pwl(self) -> PWL:
        d = self.right + self.left
        slopes = self.linear - self.left.sum() + np.concatenate([[0.0], np.cumsum(d)])
        return pwl_from_slopes(self.knots, slopes, float(self(self.knots[:1])[0]))


def lp_min_norm(x, lo, hi=None, *, knots=None, linear_unit: bool = False,
                bias_regularized: bool = False) -> LPResult:
    """Least path norm of a univariate ReLU network with lo_j <= f(x_j) <= hi_j.

    Args:
        x: constraint points, shape [n].
        lo: lower bounds (equal to the targets when ``hi`` is None: interpolation).
        hi: upper bounds; +inf / -inf entries are allowed in lo / hi.
        knots: candidate knots (default: the distinct constraint points).
        linear_unit: add a free, unregularized linear term v x (the R-bar variant).
        bias_regularized: cost |coef| * sqrt(1 + t^2) per unit (Pilanci-Ergen convention).

    Returns:
        LPResult with the optimal value and network.

    Raises:
        RuntimeError: when HiGHS reports anything but an optimal solution (e.g. infeasible bands).
    """
    x = np.asarray(x, np.float64).ravel()
    lo = np.broadcast_to(np.asarray(lo, np.float64), x.shape).copy()
    hi = lo.copy() if hi is None else np.broadcast_to(np.asarray(hi, np.float64), x.shape).copy()
    if np.any(lo > hi):
        raise ValueError("lp_min_norm: some lower bound exceeds its upper bound")
    t = np.unique(x) if knots is None else np.unique(np.asarray(knots, np.float64))
    K = t.size
    phi_r = np.maximum(np.subtract.outer(x, t), 0.0)
    phi_l = np.maximum(-np.subtract.outer(x, t), 0.0)
    # variables: r+, r-, l+, l- (>= 0, K each), c (free), v (free, only with a linear unit)
    A = np.hstack([phi_r, -phi_r, phi_l, -phi_l, np.ones((x.size, 1)), x[:, None]])
    rho = np.sqrt(1.0 + t * t) if bias_regularized else np.ones(K)
    cost = np.concatenate([rho, rho, rho, rho, [0.0, 0.0]])
    bounds = [(0, None)] * (4 * K) + [(None, None), (None, None) if linear_unit else (0, 0)]
    eq = lo == hi
    fin_hi = ~eq & np.isfinite(hi)
    fin_lo = ~eq & np.isfinite(lo)
    A_ub = np.vstack([A[fin_hi], -A[fin_lo]])
    b_ub = np.concatenate([hi[fin_hi], -lo[fin_lo]])
    res = linprog(cost, A_ub=A_ub if A_ub.size else None, b_ub=b_ub if A_ub.size else None,
                  A_eq=A[eq] if eq.any() else None, b_eq=lo[eq] if eq.any() else None,
                  bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"lp_min_norm: HiGHS did not solve the program: {res.message}")
    z = res.x
    r = z[:K] - z[K:2 * K]
    l_ = z[2 * K:3 * K] - z[3 * K:4 * K]
    return LPResult(value=float(res.fun), knots=t, right=r, left=l_, linear=float(z[-1]),
                    const=float(z[-2]))


def lp_interpolate(x, y, **kw) -> LPResult:
    """Minimal-norm interpolation f(x_j) = y_j (see :func:`lp_min_norm`)."""
    return lp_min_norm(x, y, None, **kw)


def secant_slopes(x, y) -> np.ndarray:
    """s_i = (y_{i+1} - y_i) / (x_{i+1} - x_i) for data sorted by x (distinct x required)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError("secant_slopes: x values must be distinct")
    return np.diff(y) / np.diff(x)


def closed_form_interpolation_norm(x, y, *, linear_unit: bool = False) -> float:
    """Closed-form min R over interpolants of (x_j, y_j), n >= 2 distinct points.

    With a free linear unit: V = sum_i |s_{i+1} - s_i| (total variation of the secant slopes).
    Without it, the tails s_L, s_R are free: min over them of
    max(V + |s_1 - s_L| + |s_R - s_{n-1}|, |s_L + s_R|) = max(V, (V + |s_1 + s_{n-1}|) / 2):
    moving the tails by a total d buys exactly d off the boundary term and costs d of variation.
    Lower bound: for any interpolant, int|f''| is at least the variation of the sequence
    (f'(-inf), s_1, ..., s_{n-1}, f'(+inf)), because each s_i is an average of f'.
    """
    s = secant_slopes(x, y)
    v = float(np.sum(np.abs(np.diff(s))))
    if linear_unit:
        return v
    return max(v, 0.5 * (v + abs(float(s[0] + s[-1]))))
