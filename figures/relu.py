"""Figures of the two-layer ReLU simulation, from ``DIR/results.csv`` and ``DIR/curves.npz``.

``python -m figures relu DIR`` writes under ``DIR/figures/``:
  fig1_staircase.png  data, target, standard fit, composed base predictor f and Pi(f)
  norms.png           R(f) against delta and against k, with the theory curves of ``theory``
  errors_vs_n.png     ID and OOD error against n, 95% t-intervals
  ablations.png       lambda, sigma and weight-decay ablations (the last is the regularization path)
  training.png        R(f) and the regularized objective during training (from trajectories.csv)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from composedft.runs import RunDir
from simulations.relu.config import AXIS_COLUMNS, DENOISER_REGS, base_setting
from theory import staircase as theory_staircase

from . import style
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullFormatter

from .style import plt

__all__ = ["load", "base_values", "plot_figure1", "plot_norms", "plot_errors_vs_n", "plot_ablations", "plot_training", "main"]

AXIS_FIELDS = AXIS_COLUMNS  # the results columns that identify a setting


def load(run_dir: str | Path) -> pd.DataFrame:
    """results.csv as a DataFrame (clear error naming the file if missing or malformed)."""
    path = RunDir(run_dir, create=False).results_path
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run python -m simulations.relu --out {run_dir} first)")
    df = pd.read_csv(path)
    missing = {"method", "seed", *AXIS_FIELDS, "fn_norm", "id_err", "ood_err"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    if "denoiser_reg" in df:  # RadReg-pre-trained rows belong to figures/related.py, not these slices
        df = df[~df["denoiser_reg"].isin(DENOISER_REGS[1:])].reset_index(drop=True)
    return df


def base_values(df: pd.DataFrame, run_dir: Optional[str | Path] = None) -> dict:
    """The base setting (:func:`simulations.relu.config.base_setting`) plus the geometry the
    theory curves need (k_ood, h, L): from DIR/config.json when present, else from the results."""
    base, cfg = base_setting(run_dir, {f: df[f].to_numpy() for f in AXIS_FIELDS})
    if cfg:
        return base | {"k_ood": cfg.get("k_ood", 2), "h": cfg.get("h", 1.0), "L": cfg.get("interval_len", 1.0)}
    return base | {"k_ood": int((df["k"] - df["k_train"]).mode().iloc[0]) if "k_train" in df else 2,
                   "h": 1.0, "L": 1.0}


def _slice(df: pd.DataFrame, base: dict, axis: str) -> pd.DataFrame:
    """Rows varying only ``axis`` (every other axis at its base value)."""
    keep = np.ones(len(df), bool)
    for f in AXIS_FIELDS:
        if f != axis:
            keep &= np.isclose(df[f].astype(float), float(base[f]))
    return df[keep]


def _ci_lines(ax, df: pd.DataFrame, x: str, y: str, methods, label_suffix: str = "") -> None:
    """Mean per x with a 95% t-interval band.

    Error rates: band clipped to [0, 1]. Norms and objectives (positive, drawn on log axes): the
    band's lower end is raised to the smallest value observed, since a t-interval of a few skewed
    seeds can reach below zero, which a log axis cannot show.
    """
    for meth in methods:
        sub = df[df["method"] == meth]
        if sub.empty:
            continue
        xs = np.sort(sub[x].unique())
        stats_ = np.array([style.mean_ci(sub.loc[sub[x] == v, y]) for v in xs])
        if y.endswith("_err"):
            stats_ = np.clip(stats_, 0.0, 1.0)
        elif y in ("fn_norm", "objective"):
            lowest = np.array([sub.loc[sub[x] == v, y].min() for v in xs])
            stats_[:, 1] = np.maximum(stats_[:, 1], lowest)
        ax.plot(xs, stats_[:, 0], "o-", color=style.color(meth), label=meth + label_suffix, ms=3.5, lw=1.5)
        ax.fill_between(xs, stats_[:, 1], stats_[:, 2], color=style.color(meth), alpha=0.2, lw=0)


def plot_figure1(curves: dict, ax=None):
    """Figure-1 analogue: the staircase, the standard fit, the composed base predictor f and Pi(f)."""
    style.apply()
    fig, ax = (plt.subplots(figsize=(6.4, 3.6)) if ax is None else (ax.figure, ax))
    x = curves["x"]
    k, ktr, L, delta = int(curves["k"]), int(curves["k_train"]), float(curves["L"]), float(curves["delta"])
    pitch = L + delta
    ax.axvspan(ktr * pitch - delta / 2, x.max(), color="0.9", lw=0, label="OOD intervals")
    for i in range(k):  # the target only exists on the intervals
        ax.plot([i * pitch, i * pitch + L], [i * float(curves["h"])] * 2, color="k", lw=2.5,
                label="target" if i == 0 else None, solid_capstyle="butt")
    ax.plot(x, curves["standard_f"], color=style.color("standard"), lw=1.4, label="standard f")
    ax.plot(x, curves["composed_f"], color=style.color("composed"), lw=1.4, ls="--", label="composed base f")
    ax.plot(x, curves["composed_pi_f"], color="#2ca02c", lw=1.2, label="composed Π(f)")
    if "composed_scratch_f" in curves:
        ax.plot(x, curves["composed_scratch_f"], color=style.color("composed_scratch"), lw=1.2, ls=":",
                label="composed f, random init")
    ax.scatter(curves["x_train"], curves["y_train"], s=9, color="k", zorder=5, label="labeled data")
    ax.set_xlabel("x")
    ax.set_ylabel("output")
    ax.set_title(f"Staircase (k={k}, {ktr} labeled intervals, δ={delta:g}), seed {int(curves['seed'])}")
    ax.legend(loc="upper left", ncol=2)
    lo = min(-0.5, float(np.min(curves["standard_f"])), float(np.min(curves["composed_f"])))
    hi = max(k - 0.5, float(np.max(curves["composed_f"])))
    ax.set_ylim(max(lo, -2.0), min(hi, k + 2.0))
    return fig, ax


def _panels(ax, nrows: int, ncols: int, **kw):
    """New ``nrows x ncols`` axes, or the caller's ``ax`` (an array of axes) with its figure."""
    if ax is None:
        fig, axes = plt.subplots(nrows, ncols, **kw)
        return fig, axes
    axes = np.asarray(ax) if nrows > 1 else np.atleast_1d(ax)
    return axes.flat[0].figure, axes


def plot_norms(df: pd.DataFrame, base: dict, ax=None):
    """R(f) of the standard predictor and of the composed base predictor vs delta and vs k."""
    style.apply()
    fig, axes = _panels(ax, 1, 2, figsize=(8.4, 3.4))
    methods = [m for m in ("standard", "composed", "composed_scratch") if m in set(df["method"])]
    h, L, k_ood = float(base["h"]), float(base["L"]), int(base["k_ood"])
    for a, axis in zip(axes, ("delta", "k")):
        sub = _slice(df, base, axis)
        _ci_lines(a, sub, axis, "fn_norm", methods)
        if axis == "delta":
            grid = np.geomspace(max(sub[axis].min(), 1e-3) * 0.8, sub[axis].max() * 1.25, 60) if not sub.empty else []
            ktr = int(base["k"]) - k_ood
            std = [theory_staircase.standard_min_norm(ktr, h, d, L) for d in grid]
            comp = [theory_staircase.composed_min_norm(ktr, h, d, L) for d in grid]
            a.set_xscale("log")
            if not sub.empty:  # label the swept gaps themselves; log-axis defaults overlap here
                a.set_xticks(np.sort(sub[axis].unique()))
            a.xaxis.set_major_formatter(FormatStrFormatter("%g"))
            a.xaxis.set_minor_formatter(NullFormatter())
            a.set_xlabel("gap δ")
        else:
            grid = np.arange(max(k_ood + 2, int(sub[axis].min()) if not sub.empty else 4),
                             (int(sub[axis].max()) if not sub.empty else 8) + 1)
            d = float(base["delta"])
            std = [theory_staircase.standard_min_norm(int(kk) - k_ood, h, d, L) for kk in grid]
            comp = [theory_staircase.composed_min_norm(int(kk) - k_ood, h, d, L) for kk in grid]
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            a.set_xlabel("number of intervals k")
        comp = np.where(np.asarray(comp) > 0, comp, np.nan)  # 0 (k_train = 2) has no place on a log axis
        a.plot(grid, std, color=style.color("standard"), ls=":", lw=1.2, label="theory: standard min R")
        a.plot(grid, comp, color=style.color("composed"), ls=":", lw=1.2, label="theory: composed min R")
        a.set_yscale("log")
        a.set_ylabel("R(f)  (function-space norm)")
    axes[0].set_title("norm vs gap δ")
    axes[-1].set_title("norm vs number of intervals k")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig, axes


def plot_errors_vs_n(df: pd.DataFrame, base: dict, ax=None):
    """ID and OOD error rate (after projection onto valid outputs) vs labeled-set size n."""
    style.apply()
    fig, axes = _panels(ax, 1, 2, figsize=(8.4, 3.4), sharey=True)
    sub = _slice(df, base, "n_train")
    methods = [m for m in ("direct", "standard", "posthoc", "composed", "composed_scratch") if m in set(df["method"])]
    for a, col, title in zip(axes, ("id_err", "ood_err"), ("in-distribution", "out-of-distribution (extrapolation)")):
        _ci_lines(a, sub, "n_train", col, methods)
        a.set_xscale("log", base=2)
        a.set_xlabel("labeled examples n")
        a.set_title(title)
    axes[0].set_ylabel("error rate after rounding")
    axes[0].legend(loc="best")
    return fig, axes


def plot_ablations(df: pd.DataFrame, base: dict, ax=None):
    """lambda, sigma and weight-decay ablations: R(f) of the trained predictors and OOD error of every method."""
    style.apply()
    every = (("lam", "λ (weight of the standard term)"), ("sigma", "denoiser noise σ"),
             ("weight_decay", "weight decay (regularization path)"))
    rows = [r for r in every if _slice(df, base, r[0])[r[0]].nunique() > 1] or list(every)  # swept axes only
    fig, axes = _panels(ax, len(rows), 2, figsize=(8.4, 3.0 * len(rows)))
    axes = np.asarray(axes).reshape(len(rows), 2)
    methods = [m for m in ("direct", "standard", "posthoc", "composed", "composed_scratch") if m in set(df["method"])]
    for row, (axis, label) in enumerate(rows):
        sub = _slice(df, base, axis)
        _ci_lines(axes[row, 0], sub, axis, "fn_norm", [m for m in ("standard", "composed", "composed_scratch") if m in methods])
        _ci_lines(axes[row, 1], sub, axis, "ood_err", methods)
        for a in axes[row]:
            a.set_xlabel(label)
            if axis == "lam":
                a.set_xscale("symlog", linthresh=0.1)
            elif axis == "weight_decay":
                a.set_xscale("log")
        axes[row, 0].set_yscale("log")
        axes[row, 0].yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes[row, 0].yaxis.set_major_formatter(FormatStrFormatter("%g"))
        axes[row, 0].yaxis.set_minor_formatter(NullFormatter())
        axes[row, 0].set_ylabel("R(f)")
        axes[row, 1].set_ylabel("OOD error rate")
    axes[0, 0].set_title("norm")
    axes[0, 1].set_title("OOD error")
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig, axes


def plot_training(traj: pd.DataFrame, base: dict, ax=None):
    """R(f) and the regularized objective against the training step at the base setting.

    Standard and composed start at the denoiser's norm R(Pi); how long they take to leave it is
    what decides whether the complexity gap shows (paper_repro.md §2).
    """
    style.apply()
    fig, axes = _panels(ax, 1, 2, figsize=(8.4, 3.4))
    sub = _slice(traj, base, "step")
    methods = [m for m in ("direct", "standard", "composed", "composed_scratch") if m in set(sub["method"])]
    for a, col, label in ((axes[0], "fn_norm", "R(f)  (function-space norm)"),
                          (axes[1], "objective", "regularized objective")):
        _ci_lines(a, sub, "step", col, methods)
        a.set_yscale("log")
        a.set_xlabel("Adam step")
        a.set_ylabel(label)
    axes[0].set_title("norm during fine-tuning")
    axes[1].set_title("objective during fine-tuning")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig, axes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m figures relu", description="figures of the ReLU simulation")
    ap.add_argument("run_dir", help="folder written by python -m simulations.relu")
    args = ap.parse_args(argv)
    run = Path(args.run_dir)
    try:
        df = load(run)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    base = base_values(df, run)
    out = run / "figures"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    curves_path = run / "curves.npz"
    if curves_path.exists():
        with np.load(curves_path) as z:
            curves = {k: z[k] for k in z.files}
        fig, _ = plot_figure1(curves)
        style.save(fig, out / "fig1_staircase.png")
        written.append("fig1_staircase.png")
    else:
        print(f"warning: {curves_path} not found, Figure-1 analogue skipped", file=sys.stderr)
    for name, fn in (("norms.png", plot_norms), ("errors_vs_n.png", plot_errors_vs_n),
                     ("ablations.png", plot_ablations)):
        fig, _ = fn(df, base)
        style.save(fig, out / name)
        written.append(name)
    traj_path = run / "trajectories.csv"
    if traj_path.exists():
        fig, _ = plot_training(pd.read_csv(traj_path), base)
        style.save(fig, out / "training.png")
        written.append("training.png")
    print(f"[figures] wrote {', '.join(written)} under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
