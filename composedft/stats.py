"""Summary statistics shared by the simulations and the figures."""
from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["mean_ci", "wilson_ci"]


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


def wilson_ci(successes: int, trials: int, level: float = 0.95) -> tuple[float, float, float]:
    """Proportion and its two-sided Wilson score interval ``(k/n, lo, hi)`` (no continuity correction).

    For one seed, where a t-interval over seeds does not exist: the interval is over the ``trials``
    programs, each a 0/1 verdict (figures/code.py). Wilson rather than the normal approximation
    because accuracies near 0 or 1 are common and Wald's interval collapses there. ``trials == 0``
    gives NaNs.
    """
    if not 0 <= successes <= trials:
        raise ValueError(f"wilson_ci: need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return np.nan, np.nan, np.nan
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=level, method="wilson")
    return successes / trials, float(ci.low), float(ci.high)
