"""Shared look of all figures: Agg backend, seaborn theme, one colour per method, small PNGs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

__all__ = ["apply", "METHOD_COLORS", "color", "save", "mean_ci", "plt"]

DPI = 110

METHOD_COLORS = {
    "direct": "#7f7f7f",
    "standard": "#d62728",
    "composed": "#1f77b4",
    "posthoc": "#ff7f0e",
    "composed_scratch": "#9467bd",
}


def apply() -> None:
    """Seaborn whitegrid theme, compact fonts."""
    sns.set_theme(style="whitegrid", context="paper", font_scale=1.0)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titlesize": 10,
                         "legend.fontsize": 8, "legend.frameon": False})


def color(method: str) -> str:
    extra = sns.color_palette("tab10")
    return METHOD_COLORS.get(method, extra[hash(method) % len(extra)])


def mean_ci(values, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval (mean - half, mean + half); NaN half-width for one value."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    m = float(v.mean())
    if v.size < 2:
        return m, m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def save(fig, path) -> None:
    """Tight PNG at the shared dpi, figure closed afterwards."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
