"""Benchmark: what one sandboxed test-case run costs, against a bare ``subprocess.run``.

``python -m simulations.code.bench_sandbox [--n 300] [--profile]``

The evaluator runs every test case of every program in the sandbox (docs/sandbox.md §2), so on
SPoC's short test cases the per-run overhead, not the programs, bounds its speed
(docs/training-speed.md §7). This measures it on a trivial program (read a number, print it plus
one), compiled once with the pinned flags: (a) ``n`` bare ``subprocess.run`` calls, (b) ``n``
``sandbox.run`` calls in an isolated worker, the way the evaluator's workers call it. Both
alternate in rounds within one run, so load on a shared machine hits both alike. The last line
is ``sandboxed/bare run time: N.NNx``. ``--profile`` adds the worker's ``cProfile`` (top 15 by
cumulative time) for the sandboxed runs.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from . import sandbox
from .evaluator import DEFAULT_FLAGS

PROGRAM = "#include <cstdio>\nint main(){long long x; if(scanf(\"%lld\",&x)!=1) return 1; printf(\"%lld\\n\",x+1);}\n"


def _isolate() -> None:
    sandbox.isolate_current_process()


def _sandboxed(exe: str, n: int, profile: bool) -> tuple[float, str]:
    """Seconds for ``n`` sandboxed runs (checked), and the profile text if asked."""
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for i in range(n):
        r = sandbox.run(["../prog"], f"{i}\n", files={"prog": exe})
        if r.status != "ok" or r.stdout != f"{i + 1}\n".encode():
            raise RuntimeError(f"sandboxed run {i}: {r.status} {r.detail} {r.stdout!r}")
    if prof:
        prof.disable()
    dt = time.perf_counter() - t0
    text = ""
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(15)
        text = s.getvalue()
    return dt, text


def _bare(exe: str, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        r = subprocess.run([exe], input=f"{i}\n".encode(), capture_output=True, timeout=2)
        if r.returncode or r.stdout != f"{i + 1}\n".encode():
            raise RuntimeError(f"bare run {i}: exit {r.returncode} {r.stdout!r}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.code.bench_sandbox", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="runs per method (in 3 alternating rounds)")
    ap.add_argument("--profile", action="store_true", help="print the sandboxed worker's cProfile")
    a = ap.parse_args(argv)
    if a.n < 3:
        ap.error("--n must be at least 3")
    sandbox.prepare()
    print(f"sandbox mode: {sandbox.capabilities()['mode']}")
    with tempfile.TemporaryDirectory(prefix="cft-bench-sandbox-") as td:
        src, exe = Path(td) / "prog.cpp", Path(td) / "prog"
        src.write_text(PROGRAM)
        c = subprocess.run(["g++", *DEFAULT_FLAGS, str(src), "-o", str(exe)], capture_output=True, text=True)
        if c.returncode:
            print(f"error: g++ could not build the benchmark program: {c.stderr[:500]}", file=sys.stderr)
            return 1
        per = a.n // 3
        bare = boxed = 0.0
        with ProcessPoolExecutor(1, initializer=_isolate) as pool:
            pool.submit(_sandboxed, str(exe), 3, False).result()   # warm-up: jail, staging
            for rnd in range(3):
                bare += _bare(str(exe), per)
                dt, text = pool.submit(_sandboxed, str(exe), per, a.profile and rnd == 2).result()
                boxed += dt
    n = 3 * per
    print(f"bare subprocess.run: {1e3 * bare / n:.2f} ms/run ({n} runs)")
    print(f"sandbox.run (isolated worker): {1e3 * boxed / n:.2f} ms/run ({n} runs)")
    if a.profile:
        print(text)
    print(f"sandboxed/bare run time: {boxed / bare:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
