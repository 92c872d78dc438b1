"""Norms of univariate two-layer ReLU networks with unregularized biases.

Network convention used everywhere in ``theory/``::

    f(x) = sum_j a_j * relu(w_j * x + b_j) + c,      a, w, b in R^m,  c in R.

* weight norm  ``0.5 * sum(a_j**2 + w_j**2)``  (biases b_j and c are *not* regularized);
* path norm    ``sum |a_j w_j|``  (the minimum of the weight norm over the rescalings
  (a_j, w_j, b_j) -> (a_j / s_j, s_j w_j, s_j b_j), by AM-GM);
* function-space norm (Savarese, Evron, Soudry & Srebro, COLT 2019, Theorem 1)::

      R(f) = max( int |f''| ,  |f'(-inf) + f'(+inf)| ),

  the least weight norm of any (possibly infinitely wide) network computing f.

A unit with w_j > 0 is "right facing": slope 0 left of its knot t_j = -b_j / w_j and a_j w_j
right of it. A unit with w_j < 0 is "left facing": slope a_j w_j left of t_j and 0 right of it,
so it changes the slope at t_j by -a_j w_j. Units with w_j == 0 are constants a_j relu(b_j).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "PWL", "weight_norm", "path_norm", "relu_net_to_pwl", "fn_norm", "fn_norm_of_net",
    "net_from_pwl", "eval_net", "pwl_from_slopes", "rescale_net",
]

_MERGE_RTOL = 1e-12  # knots closer than this (relative) are one knot: floating-point noise only


@dataclass(frozen=True)
class PWL:
    """A continuous piecewise-linear function on the real line.

    Attributes:
        knots: sorted, strictly increasing knot positions, shape [K].
        slopes: shape [K + 1]; slopes[0] is f'(-inf) (left of knots[0]), slopes[i] the slope
            between knots[i-1] and knots[i], slopes[K] is f'(+inf).
        values: f(knots), shape [K]. With K == 0 the function is values-free and ``offset``
            gives f(0).
        offset: f(0) (always stored; needed when there are no knots).
    """

    knots: np.ndarray
    slopes: np.ndarray
    values: np.ndarray
    offset: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.knots.size == 0:
            return self.offset + self.slopes[0] * x
        idx = np.searchsorted(self.knots, x, side="right")  # interval index 0..K
        anchor = np.clip(idx - 1, 0, self.knots.size - 1)  # nearest knot on the left (or first)
        return self.values[anchor] + self.slopes[idx] * (x - self.knots[anchor])

    @property
    def slope_changes(self) -> np.ndarray:
        return np.diff(self.slopes)


def weight_norm(a: np.ndarray, w: np.ndarray) -> float:
    """0.5 * sum(a_j^2 + w_j^2): the weight-decay cost with unregularized biases."""
    a, w = np.asarray(a, np.float64), np.asarray(w, np.float64)
    return float(0.5 * (np.sum(a * a) + np.sum(w * w)))


def path_norm(a: np.ndarray, w: np.ndarray) -> float:
    """sum_j |a_j w_j|: the weight norm minimized over per-unit rescalings (AM-GM)."""
    return float(np.sum(np.abs(np.asarray(a, np.float64) * np.asarray(w, np.float64))))


def rescale_net(a, w, b, c, s):
    """(a_j / s_j, s_j w_j, s_j b_j, c): computes the same function for any s_j > 0."""
    s = np.broadcast_to(np.asarray(s, np.float64), np.shape(a))
    if np.any(s <= 0):
        raise ValueError("rescale_net: scale factors must be positive")
    return np.asarray(a) / s, np.asarray(w) * s, np.asarray(b) * s, float(c)


def eval_net(a, w, b, c, x: np.ndarray) -> np.ndarray:
    """f(x) = sum_j a_j relu(w_j x + b_j) + c, for x of any shape."""
    x = np.asarray(x, np.float64)
    pre = np.multiply.outer(x, np.asarray(w, np.float64)) + np.asarray(b, np.float64)
    return np.maximum(pre, 0.0) @ np.asarray(a, np.float64) + float(c)


def _merge(t: np.ndarray, d: np.ndarray, rtol: float) -> tuple[np.ndarray, np.ndarray]:
    """Sort knots t with slope changes d; merge knots within rtol (relative) by summing d."""
    order = np.argsort(t, kind="stable")
    t, d = t[order], d[order]
    if t.size == 0:
        return t, d
    new = np.ones(t.size, dtype=bool)
    new[1:] = np.diff(t) > rtol * np.maximum(1.0, np.abs(t[1:]))
    starts = np.flatnonzero(new)
    return t[starts], np.add.reduceat(d, starts)


def relu_net_to_pwl(a, w, b, c, *, rtol: float = _MERGE_RTOL) -> PWL:
    """The piecewise-linear function computed by the network (knots merged, zero changes kept).

    Args:
        a, w, b: arrays of shape [m]; c: scalar. Convention f(x) = sum a relu(w x + b) + c.
        rtol: knots within this relative distance are merged (their slope changes add).

    Returns:
        PWL with knots t_j = -b_j / w_j of the units with w_j != 0, slopes and values.
    """
    a, w, b = (np.asarray(v, np.float64).ravel() for v in (a, w, b))
    if not (a.shape == w.shape == b.shape):
        raise ValueError(f"relu_net_to_pwl: a, w, b must have equal shapes, got {a.shape}, {w.shape}, {b.shape}")
    active = w != 0
    const = float(c) + float(np.sum(a[~active] * np.maximum(b[~active], 0.0)))
    a, w, b = a[active], w[active], b[active]
    t = -b / w
    p = a * w
    # right-facing units add +p at t; left-facing units add -p at t and p to the left slope.
    d = np.where(w > 0, p, -p)
    left = float(np.sum(p[w < 0]))
    knots, dk = _merge(t, d, rtol)
    slopes = left + np.concatenate([[0.0], np.cumsum(dk)])
    offset = float(eval_net(a, w, b, const, np.float64(0.0)))
    values = eval_net(a, w, b, const, knots) if knots.size else np.zeros(0)
    return PWL(knots=knots, slopes=slopes, values=np.asarray(values, np.float64), offset=offset)


def pwl_from_slopes(knots, slopes, value_at_first: float = 0.0) -> PWL:
    """Build a PWL from sorted knots, K+1 slopes and f(knots[0]) (or f(0) if there are no knots)."""
    knots = np.asarray(knots, np.float64).ravel()
    slopes = np.asarray(slopes, np.float64).ravel()
    if slopes.size != knots.size + 1:
        raise ValueError(f"pwl_from_slopes: need len(slopes) == len(knots) + 1, got {slopes.size}, {knots.size}")
    if knots.size > 1 and np.any(np.diff(knots) <= 0):
        raise ValueError("pwl_from_slopes: knots must be strictly increasing")
    if knots.size == 0:
        return PWL(knots, slopes, np.zeros(0), float(value_at_first))
    values = value_at_first + np.concatenate([[0.0], np.cumsum(slopes[1:-1] * np.diff(knots))])
    offset = float(PWL(knots, slopes, values, 0.0)(np.float64(0.0)))
    return PWL(knots, slopes, values, offset)


def fn_norm(pwl: PWL) -> float:
    """R(f) = max(sum_i |Delta slope_i|, |f'(-inf) + f'(+inf)|) (Savarese et al. 2019, Thm 1)."""
    tv = float(np.sum(np.abs(np.diff(pwl.slopes))))
    return max(tv, abs(float(pwl.slopes[0] + pwl.slopes[-1])))


def fn_norm_of_net(a, w, b, c=0.0) -> float | np.ndarray:
    """R of the function a network computes. Accepts a batch: a, w, b of shape [..., m].

    Vectorized over the batch (one sort per call), so ~10^4 nets of width 256 take well under
    a second. Knots that coincide within 1e-12 (relative) are merged before summing |changes|.
    """
    a, w, b = (np.asarray(v, np.float64) for v in (a, w, b))
    if a.ndim == 1:
        return float(fn_norm(relu_net_to_pwl(a, w, b, c)))
    a, w, b = np.broadcast_arrays(a, w, b)
    shape = a.shape[:-1]
    a, w, b = (v.reshape(-1, v.shape[-1]) for v in (a, w, b))
    p = a * w
    active = w != 0
    with np.errstate(over="ignore"):  # a subnormal w puts its knot at +-inf, where it belongs
        t = np.where(active, -b / np.where(active, w, 1.0), np.inf)
    d = np.where(w > 0, p, -p) * active
    left = np.sum(np.where(w < 0, p, 0.0), axis=1)
    right = np.sum(np.where(w > 0, p, 0.0), axis=1)
    order = np.argsort(t, axis=1, kind="stable")
    t = np.take_along_axis(t, order, 1)
    d = np.take_along_axis(d, order, 1)
    # group ids: a new group starts where the knot moves by more than the merge tolerance
    with np.errstate(invalid="ignore"):  # inf - inf between inactive (w = 0, d = 0) units
        gap = np.diff(t, axis=1) > _MERGE_RTOL * np.maximum(1.0, np.abs(t[:, 1:]))
    gid = np.concatenate([np.zeros((t.shape[0], 1), int), np.cumsum(gap, axis=1)], axis=1)
    rows = np.repeat(np.arange(t.shape[0]), t.shape[1])
    flat = rows * t.shape[1] + gid.ravel()
    sums = np.bincount(flat, weights=d.ravel(), minlength=t.shape[0] * t.shape[1])
    tv = np.abs(sums).reshape(t.shape).sum(axis=1)
    return np.maximum(tv, np.abs(left + right)).reshape(shape)


def net_from_pwl(pwl: PWL) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """A balanced network (|a_j| = |w_j|) computing ``pwl`` with weight norm == path norm == R(f).

    Construction (the achievability half of Savarese et al.'s theorem): knot i has slope change
    D_i = r_i + l_i, split into a right-facing part r_i and a left-facing part l_i. The tails
    force sum_i r_i = f'(+inf) and sum_i l_i = -f'(-inf). When f'(+inf) lies in [-N, P]
    (P, N: total positive / negative change) the split keeps the signs of D_i and costs
    sum |D_i|; otherwise the remainder v is a pair of opposite units (+v right, -v left) at one
    knot, and the total is |f'(-inf) + f'(+inf)|. Either way the cost is R(f).
    """
    knots, d = pwl.knots, np.diff(pwl.slopes)
    s_right = float(pwl.slopes[-1])
    r = np.zeros_like(d)
    if knots.size == 0:
        knots, d, r = np.zeros(1), np.zeros(1), np.zeros(1)
    pos, neg = np.clip(d, 0, None), np.clip(d, None, 0)
    P, N = float(pos.sum()), float(-neg.sum())
    if s_right >= 0:
        r = pos * (min(s_right, P) / P if P > 0 else 0.0)
    else:
        r = neg * (min(-s_right, N) / N if N > 0 else 0.0)
    r[0] += s_right - float(r.sum())  # remainder (0 unless |s_right| exceeds P or N)
    l = d - r
    units_t = np.concatenate([knots, knots])
    units_p = np.concatenate([r, -l])  # a*w: right-facing p = r, left-facing p = -l
    facing = np.concatenate([np.ones_like(r), -np.ones_like(l)])
    keep = units_p != 0
    units_t, units_p, facing = units_t[keep], units_p[keep], facing[keep]
    w = facing * np.sqrt(np.abs(units_p))
    a = units_p / w if w.size else np.zeros(0)
    b = -w * units_t
    c = 0.0
    x0 = float(knots[0])
    c = float(pwl(np.float64(x0)) - eval_net(a, w, b, 0.0, np.float64(x0)))
    return a, w, b, c
