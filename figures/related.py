"""``python -m figures related DIR [DIR ...]``: the related fine-tuning methods on the ReLU study.

Reads one or more ``results.csv`` (e.g. a k sweep and a delta sweep of the ``related`` preset;
never retrains), then writes ``DIR/figures/related.png`` (R(f), OOD error and linearization gap
per method across k and delta, mean and 95% t-interval over seeds) and prints the Markdown table
of ``paper_repro.md`` (docs/related-methods.md §5). Rows are keyed by (method, seed, setting);
the same key in two folders must carry the same numbers, or the merge is refused.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from simulations.relu.config import AXIS_COLUMNS

from . import style
from .style import mean_ci, plt

__all__ = ["load_many", "summarize", "markdown_table", "plot_related", "main"]

ORDER = ("standard", "composed", "posthoc", "smart", "linearized", "grouped", "direct", "composed_scratch")
METRICS = (("fn_norm", "R(f)"), ("id_err", "ID err"), ("ood_err", "OOD err"), ("lin_gap", "lin. gap"),
           ("kernel_dist", "kernel dist."))
KEY = ["method", "seed", "denoiser_reg", *AXIS_COLUMNS]
# the shared palette hashes unknown names and collides for these; posthoc shares standard's f (dashed)
COLORS = {"smart": "#2ca02c", "linearized": "#8c564b", "grouped": "#e377c2"}


def load_many(dirs: list[str | Path]) -> pd.DataFrame:
    """The union of the folders' results (duplicate keys must agree; errors name the file)."""
    frames = []
    for d in dirs:
        path = Path(d) / "results.csv"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not found")
        df = pd.read_csv(path)
        missing = set(KEY) | {m for m, _ in METRICS} - set(df.columns)
        missing = {c for c in missing if c not in df.columns}
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    dup = df[df.duplicated(KEY, keep=False)]
    if len(dup):
        spread = dup.groupby(KEY).nunique(dropna=False).max().max()
        if spread > 1:
            raise ValueError("the same (method, seed, setting) has different numbers in two folders")
    return df.drop_duplicates(KEY).reset_index(drop=True)


def summarize(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean and 95% t-interval over seeds of each metric, per ``by`` group."""
    rows = []
    for key, g in df.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key), seeds=len(g))
        for col, _ in METRICS:
            row[col], row[col + "_lo"], row[col + "_hi"] = mean_ci(g[col].to_numpy(float))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(m: float, lo: float, hi: float) -> str:
    return "-" if not np.isfinite(m) else f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def markdown_table(summary: pd.DataFrame, by: list[str]) -> str:
    cols = [*by, "seeds", *[name for _, name in METRICS]]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in summary.iterrows():
        cells = [f"{r[b]:g}" if isinstance(r[b], (int, float, np.floating, np.integer)) else str(r[b]) for b in by]
        cells += [str(int(r["seeds"]))] + [_fmt(r[c], r[c + "_lo"], r[c + "_hi"]) for c, _ in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _order(methods) -> list[str]:
    return sorted(set(methods), key=lambda m: ORDER.index(m) if m in ORDER else len(ORDER))


def plot_related(df: pd.DataFrame, base: dict, ax=None):
    """3 x 2 panels: R(f), OOD error and linearization gap (rows) against k and delta (columns)."""
    style.apply()
    if ax is None:
        fig, ax = plt.subplots(3, 2, figsize=(9, 8.5), squeeze=False)
    else:
        fig = ax[0][0].figure
    plain = df[df["denoiser_reg"] == "none"]
    for j, axis in enumerate(("k", "delta")):
        others = [c for c in AXIS_COLUMNS if c != axis]
        sl = plain[np.all([np.isclose(plain[c].astype(float), float(base[c])) for c in others], axis=0)]
        s = summarize(sl, ["method", axis])
        for i, (col, name) in enumerate((("fn_norm", "R(f)"), ("ood_err", "OOD error"), ("lin_gap", "linearization gap"))):
            a = ax[i][j]
            for m in _order(s["method"]):
                sm = s[s["method"] == m].sort_values(axis)
                if sm[col].notna().any():
                    a.errorbar(sm[axis], sm[col], yerr=[sm[col] - sm[col + "_lo"], sm[col + "_hi"] - sm[col]],
                               marker="o", ms=3, capsize=2, color=COLORS.get(m, style.color(m)), label=m,
                               ls="--" if m == "posthoc" else "-")
            a.set_xlabel(axis)
            a.set_ylabel(name)
    ax[0][0].legend(ncol=2)
    fig.suptitle("related fine-tuning methods (mean, 95% t-interval over seeds)")
    fig.tight_layout()
    return fig, ax


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m figures related", description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", help="folders written by python -m simulations.relu (first: figure goes there)")
    args = ap.parse_args(argv)
    try:
        df = load_many(args.run_dirs)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    base = {c: float(df[df["denoiser_reg"] == "none"][c].mode().iloc[0]) for c in AXIS_COLUMNS}
    out = Path(args.run_dirs[0]) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    fig, _ = plot_related(df, base)
    style.save(fig, out / "related.png")
    on_base = df[np.all([np.isclose(df[c].astype(float), base[c]) for c in AXIS_COLUMNS if c not in ("k", "delta")], axis=0)]
    print(markdown_table(summarize(on_base, ["denoiser_reg", "k", "delta", "method"]), ["denoiser_reg", "k", "delta", "method"]))
    print(f"[figures] wrote {out / 'related.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
