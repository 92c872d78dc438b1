"""``python -m simulations.fonts.summary DIR [DIR ...]``: test MSE and ‖f‖ per method, mean [95% CI] over seeds.

Each DIR is one run folder (one seed) holding ``results.csv``; docs/fonts.md §4 says what the
columns mean. Intervals are Student-t over the seeds (:func:`composedft.stats.mean_ci`).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from composedft.io import DataFileError, read_csv
from composedft.stats import mean_ci

from .stages import METHOD_NAMES, RESULT_FIELDS

__all__ = ["load_results", "summarize", "markdown", "main"]


def load_results(dirs: Sequence[str | Path]) -> list[dict]:
    """Rows of every ``DIR/results.csv`` with numbers parsed; errors name the file and line."""
    rows = []
    for d in dirs:
        path = Path(d) / "results.csv"
        for lineno, r in enumerate(read_csv(path), 2):
            missing = [k for k in ("method", "split", "mse", "seed", "f_norm") if k not in r]
            if missing:
                raise DataFileError(f"{path}: missing column(s) {', '.join(missing)} (expected {', '.join(RESULT_FIELDS)})")
            try:
                rows.append({**r, "mse": float(r["mse"]), "f_norm": float(r["f_norm"]), "seed": int(r["seed"]),
                             "dir": str(d)})
            except ValueError as err:
                raise DataFileError(f"{path}: line {lineno}: {err}") from None
    return rows


def summarize(rows: list[dict], split: str = "test") -> list[dict]:
    """Per method (registry order, then others): seeds, mean and 95% CI of mse and f_norm on ``split``."""
    names = [m for m in METHOD_NAMES if any(r["method"] == m for r in rows)]
    names += sorted({r["method"] for r in rows} - set(names))
    out = []
    for m in names:
        sel = [r for r in rows if r["method"] == m and r["split"] == split]
        out.append({"method": m, "seeds": sorted(r["seed"] for r in sel),
                    "mse": mean_ci([r["mse"] for r in sel]), "f_norm": mean_ci([r["f_norm"] for r in sel])})
    return out


def markdown(summary: list[dict], split: str = "test") -> str:
    """A Markdown table: method | seeds | MSE mean [95% CI] | ‖f‖ mean [95% CI]."""
    lines = [f"| method | seeds | {split} MSE, mean [95% CI] | ‖f‖ (Frobenius, all weights) |", "|---|---|---|---|"]
    for s in summary:
        m, f = s["mse"], s["f_norm"]
        lines.append(f"| {s['method']} | {len(s['seeds'])} | {m[0]:.4f} [{m[1]:.4f}, {m[2]:.4f}] | "
                     f"{f[0]:.1f} [{f[1]:.1f}, {f[2]:.1f}] |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 0 if argv else 2
    try:
        rows = load_results(argv)
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for split in ("test", "val"):
        print(markdown(summarize(rows, split), split) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
