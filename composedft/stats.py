"""Summary statistics shared by the simulations and the figures."""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["mean_ci"]


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided Student-t interval ``(mean, mean - half, mean + half)`` over seeds.

    ``half = t_{(1+level)/2, n-1} * sd / sqrt(n)`` with the sample sd (ddof = 1). Non-finite
    values are dropped; one value gives a zero-width interval, none gives NaNs.
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half
