"""Shared look of all figures: Agg backend, seaborn theme, one colour per method, small PNGs."""
from __future__ import annotations

import zlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from composedft.stats import mean_ci  # noqa: E402  (re-exported for the figure modules)

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
    # crc32, not hash(): str hashes change between processes, colours must not
    return METHOD_COLORS.get(method, extra[zlib.crc32(method.encode()) % len(extra)])


def save(fig, path) -> None:
    """Tight PNG at the shared dpi, figure closed afterwards."""
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
