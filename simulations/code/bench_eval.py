"""Benchmark: naive sequential g++ versus the evaluator, on the same gold SPoC programs.

``python -m simulations.code.bench_eval [--data ../shared/data/spoc/testw.tsv --n 100]``

(a) naive: for each program in turn, ``g++`` with the same pinned flags but no precompiled header,
    then every test case with ``subprocess.run(timeout=2)`` (no sandbox), as the reference did;
(b) the evaluator: precompiled header, many programs per g++ call (docs/sandbox.md §8), process
    pool (one worker per core), sandboxed runs.

(b) starts from an empty cache directory, so its time includes building the precompiled header
and compiling every program (no binary-cache hits). Both see all test cases (public + hidden) of
the first ``--n`` programs of the TSV and must agree on every verdict (printed as ``agreement``,
with how many programs ran from batch binaries). The last line printed is ``speedup: <a/b>x``.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .data import default_data_dir, load_spoc, tgt_to_code
from .evaluator import DEFAULT_FLAGS, Evaluator


def naive(sources: dict[str, str], examples, flags=DEFAULT_FLAGS, time_limit=2.0) -> dict[str, str]:
    """Sequential compile-and-run without PCH, cache or sandbox; returns id -> status."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="cft-naive-") as td:
        for e in examples:
            cpp, exe = Path(td) / "prog.cpp", Path(td) / "prog"
            cpp.write_text(sources[e.id])
            if subprocess.run(["g++", *flags, str(cpp), "-o", str(exe)], capture_output=True).returncode:
                out[e.id] = "compile_error"
                continue
            status = "ok"
            for c in e.cases:
                try:
                    r = subprocess.run([str(exe)], input=c.input.encode(), capture_output=True,
                                       timeout=time_limit, cwd=td)
                except subprocess.TimeoutExpired:
                    status = "timeout"
                    break
                if r.returncode != 0:
                    status = "runtime_error"
                    break
                if r.stdout != c.output.encode():
                    status = "wrong_answer"
                    break
            out[e.id] = status
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.code.bench_eval", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    d = default_data_dir()
    ap.add_argument("--data", default=str(d / "spoc" / "testw.tsv") if d else None)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args(argv)
    if not a.data or not Path(a.data).exists():
        print("error: SPoC data not found; pass --data PATH/testw.tsv", file=sys.stderr)
        return 2
    examples = load_spoc(a.data)[:a.n]
    sources = {e.id: tgt_to_code(e.tgt) for e in examples}
    n_cases = sum(len(e.cases) for e in examples)
    print(f"{len(examples)} gold programs, {n_cases} test cases, {os.cpu_count()} cores, flags {' '.join(DEFAULT_FLAGS)}")

    t0 = time.perf_counter()
    naive_status = naive(sources, examples)
    t_naive = time.perf_counter() - t0
    print(f"naive (sequential g++, no PCH, no sandbox): {t_naive:.1f}s  "
          f"({len(examples) / t_naive:.2f} programs/s, {sum(s == 'ok' for s in naive_status.values())} ok)")

    with tempfile.TemporaryDirectory(prefix="cft-bench-cache-") as cache:
        ev = Evaluator(workers=a.workers, cache_dir=cache)
        t0 = time.perf_counter()
        records, summary = ev.evaluate(sources, examples)
        t_eval = time.perf_counter() - t0
    print(f"evaluator (cold cache incl. PCH build, {ev.workers} workers, sandboxed): {t_eval:.1f}s  "
          f"({len(examples) / t_eval:.2f} programs/s, {summary['ok']} ok)")
    disagree = [r["id"] for r in records if r["status"] != naive_status[r["id"]]]
    print(f"batched: {summary['batched']}/{len(records)} programs ran from batch binaries; agreement with naive: "
          f"{len(records) - len(disagree)}/{len(records)} verdicts")
    if disagree:
        print(f"verdicts differ on {len(disagree)} programs: {disagree[:10]}")
    print(f"speedup: {t_naive / t_eval:.2f}x")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
