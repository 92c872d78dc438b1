"""Figures of the font experiment, from saved run folders (one per seed) only.

``python -m figures fonts DIR [DIR ...] [--out FOLDER]`` writes (default FOLDER: ``DIR/figures``
of the first DIR):
  samples.png   the paper's Figure 3 layout on held-out test pairs of the first DIR: rows target,
                direct, composed Π(f(x)), base predictor f(x) alone
  mse.png       test MSE and ‖f‖ per method, mean and 95% t-interval over the DIRs (seeds)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from composedft.io import DataFileError
from simulations.fonts.summary import load_results, summarize

from . import style
from .style import plt

__all__ = ["SAMPLE_ROWS", "plot_samples", "plot_mse", "main"]

# (key in samples.npz, row label): the paper's Figure 3 rows
SAMPLE_ROWS = (("target", "target"), ("direct", "direct"), ("composed", "composed Π(f(x))"),
               ("composed-base", "base f(x) alone"))


def plot_samples(samples: dict[str, np.ndarray]):
    """Grid of glyphs: one row per :data:`SAMPLE_ROWS` entry present, one column per test pair."""
    rows = [(k, label) for k, label in SAMPLE_ROWS if k in samples]
    n = len(samples["target"])
    fig, axes = plt.subplots(len(rows), n, figsize=(0.62 * n + 1.4, 0.68 * len(rows)), squeeze=False)
    chars = samples.get("chars")
    for i, (key, label) in enumerate(rows):
        for j in range(n):
            ax = axes[i, j]
            ax.imshow(samples[key][j, 0], cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and chars is not None:
                ax.set_title(f"{chars[int(samples['pairs'][j, 1])]}·font{int(samples['pairs'][j, 0])}", fontsize=6)
        axes[i, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig, axes


def plot_mse(rows: list[dict]):
    """Two panels: test MSE per method and ‖f‖ per method; bars are means, whiskers 95% CIs, dots seeds."""
    summary = summarize(rows, "test")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, key, title in ((axes[0], "mse", "test MSE per pixel on [-1, 1]"), (axes[1], "f_norm", "‖f‖ (all weights)")):
        for i, s in enumerate(summary):
            m, lo, hi = s[key]
            ax.bar(i, m, color=style.color(s["method"]), alpha=0.8)
            ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="k", capsize=3, lw=1)
            vals = [r[key] for r in rows if r["method"] == s["method"] and r["split"] == "test"]
            ax.scatter(np.full(len(vals), i) + np.linspace(-0.15, 0.15, len(vals)), vals, s=8, color="k", zorder=3)
        ax.set_xticks(range(len(summary)), [s["method"] for s in summary], rotation=20, fontsize=8)
        ax.set_title(title)
    n_seeds = max((len(s["seeds"]) for s in summary), default=0)
    fig.suptitle(f"font generation, {n_seeds} seed(s): mean, 95% t-interval, seeds", fontsize=9)
    fig.tight_layout()
    return fig, axes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m figures fonts", description="figures of the font experiment")
    ap.add_argument("run_dirs", nargs="+", help="folders written by python -m simulations.fonts (one per seed)")
    ap.add_argument("--out", default=None, help="folder for the PNGs (default: FIRST_DIR/figures)")
    args = ap.parse_args(argv)
    try:
        rows = load_results(args.run_dirs)
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    first = Path(args.run_dirs[0])
    out = Path(args.out) if args.out else first / "figures"
    out.mkdir(parents=True, exist_ok=True)
    style.apply()
    samples_path = first / "samples.npz"
    if samples_path.exists():
        with np.load(samples_path) as z:
            fig, _ = plot_samples({k: z[k] for k in z.files})
        style.save(fig, out / "samples.png")
    else:
        print(f"warning: {samples_path} not found, samples.png skipped", file=sys.stderr)
    fig, _ = plot_mse(rows)
    style.save(fig, out / "mse.png")
    print(f"[figures] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
