"""``python -m theory [--quick] [--json PATH]``: the table of theory checks (see theory/README.md)."""
from __future__ import annotations

import argparse
import sys
import time

from composedft.io import atomic_write_json

from .checks import run_checks


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5)):
        return f"{v:.2e}"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_table(recs: list[dict]) -> str:
    """Fixed-width table: check, closed form, convex program, trained, rel errs, tols, verdict."""
    cols = ["check", "closed form", "convex", "trained", "rel err", "tol", "rel err (tr)", "tol (tr)", "verdict"]
    rows = [[r["name"], _fmt(r["closed_form"]), _fmt(r["convex"]), _fmt(r["trained"]), _fmt(r["rel_err"]),
             _fmt(r["tol"]), _fmt(r["rel_err_trained"]), _fmt(r["tol_trained"]),
             "PASS" if r["passed"] else "FAIL"] for r in recs]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(cols)]
    line = lambda row: "  ".join(x.ljust(w) for x, w in zip(row, widths))  # noqa: E731
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m theory", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer random cases, shorter training (< 15 s)")
    ap.add_argument("--json", metavar="PATH", help="write the records as a JSON list")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    recs = run_checks(quick=args.quick, seed=args.seed)
    wall = time.perf_counter() - t0
    print(format_table(recs))
    n_fail = sum(not r["passed"] for r in recs)
    print(f"\n{len(recs)} checks, {len(recs) - n_fail} passed, {n_fail} failed; "
          f"wall time {wall:.1f} s ({'quick' if args.quick else 'full'}, seed {args.seed})")
    if args.json:
        atomic_write_json(args.json, recs)
        print(f"wrote {args.json}")
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
