"""``python -m simulations.relu.summary DIR``: the paper's two ReLU claims, checked from saved results.

Reads ``DIR/results.csv`` (never retrains) and prints, as Markdown:

1. per setting and method: R(f), ID and OOD error rates as mean [95% t-interval] over seeds, with
   the theory minima of ``theory.staircase``;
2. the claims at the hardest setting of the base slices (largest k, and smallest delta):
   "standard's mean R(f) is at least ``--ratio`` times the composed base predictor's" and
   "composed's mean OOD error is below standard's", each marked holds / fails.

The exit status is 0 whether or not a claim holds (this reports; it does not judge the run),
and 2 when the folder has no usable results.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from composedft.io import DataFileError, read_csv
from composedft.runs import RunDir
from composedft.stats import mean_ci

from .config import AXIS_COLUMNS, DENOISER_REGS, base_setting

__all__ = ["load_rows", "table", "claims", "main"]

METHOD_ORDER = ("direct", "standard", "posthoc", "composed", "composed_scratch")


def load_rows(run_dir: str | Path) -> list[dict]:
    """Rows of ``results.csv`` with the numeric columns as floats (error names file and column)."""
    path = RunDir(run_dir, create=False).results_path
    if not path.exists():
        raise DataFileError(f"{path}: not found (run python -m simulations.relu --out {run_dir} first)")
    # RadReg-pre-trained rows (the denoiser_reg axis) share the base setting's axis values: leave them out
    rows = [r for r in read_csv(path) if r.get("denoiser_reg") not in DENOISER_REGS[1:]]
    if not rows:
        raise DataFileError(f"{path}: no result rows")
    need = {"method", "seed", "fn_norm", "id_err", "ood_err", "theory_standard", "theory_composed", *AXIS_COLUMNS}
    missing = need - set(rows[0])
    if missing:
        raise DataFileError(f"{path}: missing columns {sorted(missing)}")
    out = []
    for line, r in enumerate(rows, start=2):
        try:
            out.append({c: (r[c] if c == "method" else float(r[c])) for c in need})
        except ValueError as err:
            raise DataFileError(f"{path}, line {line}: {err}") from None
    return out


def _fmt(values) -> str:
    m, lo, hi = mean_ci(values)
    return f"{m:.3g} [{lo:.3g}, {hi:.3g}]"


def _groups(rows: list[dict]) -> dict[tuple, dict[str, list[dict]]]:
    out: dict[tuple, dict[str, list[dict]]] = {}
    for r in rows:
        out.setdefault(tuple(r[c] for c in AXIS_COLUMNS), {}).setdefault(r["method"], []).append(r)
    return out


def table(rows: list[dict]) -> str:
    """Markdown table: one line per setting x method."""
    lines = ["| " + " | ".join(AXIS_COLUMNS) + " | theory min R: standard / composed | method | seeds "
             "| R(f) mean [95% CI] | ID err | OOD err |",
             "|" + "---|" * (len(AXIS_COLUMNS) + 6)]
    for key, by_method in sorted(_groups(rows).items()):
        first = next(iter(by_method.values()))[0]
        theory = f"{first['theory_standard']:.3g} / {first['theory_composed']:.3g}"
        for m in sorted(by_method, key=lambda m: (METHOD_ORDER + (m,)).index(m)):
            rs = by_method[m]
            lines.append("| " + " | ".join(f"{v:g}" for v in key) + f" | {theory} | {m} | {len(rs)} | "
                         + " | ".join(_fmt([r[c] for r in rs]) for c in ("fn_norm", "id_err", "ood_err")) + " |")
    return "\n".join(lines)


def claims(rows: list[dict], ratio: float = 3.0, run_dir: str | Path | None = None) -> list[str]:
    """The two claims at the largest k and at the smallest delta of the base slices (swept axes only)."""
    base, _ = base_setting(run_dir, {c: [r[c] for r in rows] for c in AXIS_COLUMNS})
    out = []
    for axis, pick in (("k", max), ("delta", min)):
        on_slice = [r for r in rows if all(r[c] == base[c] for c in AXIS_COLUMNS if c != axis)]
        if len({r[axis] for r in on_slice}) < 2:
            continue
        hard = pick(r[axis] for r in on_slice)
        at = {m: [r for r in on_slice if r[axis] == hard and r["method"] == m] for m in ("standard", "composed")}
        if not all(at.values()):
            out.append(f"- {axis} = {hard:g}: standard or composed missing, no claim checked")
            continue
        r_std, r_comp = (float(np.mean([r["fn_norm"] for r in at[m]])) for m in ("standard", "composed"))
        e_std, e_comp = (float(np.mean([r["ood_err"] for r in at[m]])) for m in ("standard", "composed"))
        got = r_std / r_comp if r_comp > 0 else float("inf")
        where = ", ".join(f"{c}={base[c]:g}" for c in AXIS_COLUMNS if c != axis)
        out.append(f"- {pick.__name__} {axis} = {hard:g} ({where}; {len(at['standard'])} seeds): "
                   f"mean R(f) standard {r_std:.3g} vs composed {r_comp:.3g}, ratio {got:.2f}x "
                   f"(claim >= {ratio:g}x: {'holds' if got >= ratio else 'fails'}); mean OOD error "
                   f"standard {e_std:.3f} vs composed {e_comp:.3f} "
                   f"(claim composed < standard: {'holds' if e_comp < e_std else 'fails'})")
    return out


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulations.relu.summary", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="folder written by python -m simulations.relu")
    ap.add_argument("--ratio", type=float, default=3.0, help="norm ratio the complexity claim asks for")
    ap.add_argument("--claims-only", action="store_true", help="print only the claim lines")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        rows = load_rows(args.run_dir)
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.claims_only:
        print(table(rows) + "\n")
    print("\n".join(claims(rows, args.ratio, args.run_dir)) or "no k or delta axis swept: no claim checked")
    return 0


if __name__ == "__main__":
    sys.exit(main())
