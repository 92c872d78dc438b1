"""Compile-and-run evaluator: a program is correct iff it compiles and passes every test case.

Protocol (the paper's metric: a program is correct iff it passes all test cases, SPoC §4.2):
pinned g++ flags recorded in the summary; ``bits/stdc++.h`` precompiled once per (compiler, flags)
and cached; binaries and compiler verdicts cached by content hash (:mod:`.compiler`); up to
``max_batch`` programs per g++ call where that provably changes no verdict (:mod:`.batch_compile`,
docs/sandbox.md §8; ``max_batch=0`` compiles each alone; ``summary["batched"]`` counts); one worker
process per core; compiling and every run in the sandbox of :mod:`.sandbox` (docs/sandbox.md: a
jail per worker, 2 CPU-seconds per test case by default); byte-exact stdout comparison; a program
stops at its first failing case (as SPoC's ``run_tests`` does).

Flags: ``-std=gnu++11 -O0 -w -pipe``, chosen on the gold programs (check-gold, all of TestW):
``-O0`` is the reference's flagless g++; the SPoC programs predate C++17, and under
``-std=gnu++17`` 20 of 4,784 gold programs fail to compile (``gets`` removed; names such as
``size``, ``gcd``, ``visit`` clash with ``std::``), while ``-O2`` turns the undefined behaviour of
11 more (a non-void function without ``return``, uninitialized reads) into crashes or wrong
output. TestW: 1,744/1,749 pass with these flags, 1,732/1,749 with ``-std=gnu++17 -O2``.

Statuses: ``ok``, ``compile_error``, ``runtime_error`` (non-zero exit, signal, output or memory cap),
``wrong_answer``, ``timeout``, ``missing`` (no prediction for that id).
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import signal
import time
from pathlib import Path
from typing import Sequence

from . import batch_compile as bc
from . import batch_source
from . import sandbox
from .compiler import DEFAULT_FLAGS, Compiler, PchBuild, default_cache_dir
from .data import Example, TestCase
from .workers import imap_unordered

__all__ = ["DEFAULT_FLAGS", "STATUSES", "Compiler", "Evaluator", "default_cache_dir",
           "read_predictions"]

STATUSES = ("ok", "compile_error", "runtime_error", "wrong_answer", "timeout", "missing")


# ---------------------------------------------------------------------------------------------

def _check_program(compiler: Compiler, pid: str, source: str, cases: Sequence[TestCase],
                   limits: sandbox.Limits, built: bc.Built | None = None) -> dict:
    """Compile (unless ``built``: a batch binary, .batch_compile) and run every case in turn."""
    if built is None:
        binp, msg = compiler.compile(source)
        if binp is None:
            return {"id": pid, "status": "compile_error", "first_failing_case": None, "detail": msg[:1000]}
        built = bc.Built(binp)
    for i, case in enumerate(cases):
        r = sandbox.run(built.argv(), case.input, limits, files={"prog": built.path})
        if r.status != "ok":
            detail = r.detail + ((": " + r.stderr.decode("utf-8", "replace")[:300]) if r.stderr else "")
            return {"id": pid, "status": r.status, "first_failing_case": i, "detail": detail}
        if r.stdout != case.output.encode("utf-8", "surrogateescape"):
            got = r.stdout[:200].decode("utf-8", "replace")
            return {"id": pid, "status": "wrong_answer", "first_failing_case": i,
                    "detail": f"expected {case.output[:200]!r}, got {got!r}"}
    return {"id": pid, "status": "ok", "first_failing_case": None, "detail": ""}


_WORKER: dict = {}


def _on_sigterm(signum, frame) -> None:
    """A worker told to stop (the parent was interrupted): kill its sandboxed processes, leave."""
    sandbox.kill_all_of_this_process()
    os._exit(128 + signum)


def _init_worker(compiler: Compiler, limits: sandbox.Limits) -> None:
    """Worker initializer: private namespaces + jail once per worker (docs/sandbox.md §2); Ctrl-C
    is handled by the parent alone, which stops the workers with SIGTERM."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    _WORKER["compiler"], _WORKER["limits"] = compiler, limits
    sandbox.isolate_current_process()


def _worker_task(task: tuple[int, str, str, tuple[TestCase, ...], bc.Built | None]) -> tuple[int, dict]:
    slot, pid, source, cases, built = task
    try:
        return slot, _check_program(_WORKER["compiler"], pid, source, cases, _WORKER["limits"], built)
    except Exception as e:  # never lose the whole evaluation to one program
        return slot, {"id": pid, "status": "runtime_error", "first_failing_case": None,
                      "detail": f"evaluator error: {type(e).__name__}: {e}"}


def _batch_task(items: list[tuple[str, str, str]]) -> dict[str, bc.Built]:
    """Compile one batch in this worker's sandbox; the programs it does not return compile alone."""
    try:
        return bc.compile_batch(_WORKER["compiler"], items)
    except Exception:  # a batch that fails in any other way: its programs compile alone
        return {}


def _positive(name: str, v, integer: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
    if not ok or (integer and int(v) != v):
        raise ValueError(f"{name}: must be a positive finite {'integer' if integer else 'number'}, got {v!r}")


class Evaluator:
    """Evaluate C++ predictions against examples' test cases, in parallel sandboxed workers."""

    def __init__(self, workers: int | None = None, time_limit_s: float = 2.0,
                 cache_dir: str | os.PathLike | None = None, flags: Sequence[str] = DEFAULT_FLAGS,
                 memory_bytes: int = 1 << 30, output_bytes: int = 8 << 20, use_pch: bool = True,
                 cxx: str = "g++", progress: bool = False, max_batch: int = bc.MAX_BATCH, static: bool = True):
        if workers is not None:
            _positive("workers", workers, integer=True)
        _positive("time_limit_s", time_limit_s)
        if not isinstance(max_batch, int) or isinstance(max_batch, bool) or max_batch < 0:
            raise ValueError(f"max_batch: must be a non-negative integer, got {max_batch!r}")
        self.workers = workers or os.cpu_count() or 1
        self.limits = sandbox.Limits(time_s=time_limit_s, memory_bytes=memory_bytes, output_bytes=output_bytes)
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        if cache.exists() and not cache.is_dir():
            raise ValueError(f"{cache}: cache directory is a file")
        self.compiler = Compiler(cache.absolute(), tuple(flags), cxx, use_pch, static)
        self.progress = progress
        self.last_batched = 0   # programs of the last evaluation run from batch binaries
        # Batches need the x86-64 dispatcher (batch_source._DISPATCH); 0 or 1 compiles each alone.
        self.max_batch = max_batch if platform.machine() == "x86_64" else 0

    def _batches(self, tasks: list[tuple[int, str, str, tuple[TestCase, ...]]],
                 pch: PchBuild | None) -> dict[int, bc.Built]:
        """Slot -> batch binary, for every program that runs from one (docs/sandbox.md §8):
        cached, or compiled now in batches, one worker per batch. The precompiled header ``pch``
        (if being built) is finished before the workers start: each batch may take several g++
        calls, and without the header each would parse bits/stdc++.h again (measured: the batch
        phase took 4x longer)."""
        if self.max_batch < 2:
            return {}
        names = bc.header_names(self.compiler)
        noop = bc.noop_headers(self.compiler, bc.wanted_headers([t[2] for t in tasks]))
        self.compiler.finish_pch(pch)
        out: dict[int, bc.Built] = {}
        pending = []
        for slot, _, src, _ in tasks:
            binp = self.compiler.binary_path(src)
            if binp.exists() or binp.with_suffix(".err").exists():
                continue   # compiled alone before: that entry stays the verdict
            hit = bc.cached(self.compiler, src)
            if hit is not None:
                out[slot] = hit
            elif (body := batch_source.prepare(src, names, noop)) is not None:
                pending.append((str(slot), src, body))
        batches = [pending[s] for s in bc.plan_batches(len(pending), self.workers, self.max_batch)]
        init = functools.partial(_init_worker, self.compiler, self.limits)
        for res in imap_unordered(_batch_task, batches, self.workers, init) if batches else ():
            out.update({int(k): v for k, v in res.items()})
        return out

    def _map(self, tasks: list[tuple[int, str, str, tuple[TestCase, ...]]]) -> dict[int, dict]:
        """Run the tasks in worker processes (always: the workers hold the namespaces, this
        process does not); returns slot -> record. An interrupt stops the workers with SIGTERM;
        each kills its sandboxed processes (``_on_sigterm``)."""
        from .progress import Progress
        pch = self.compiler.start_pch()  # a missing header builds while the batches are prepared
        try:
            sandbox.prepare()  # the sandbox directory and run init, shared by the forked workers
            built = self._batches(tasks, pch)
        finally:
            self.compiler.finish_pch(pch)  # before any worker forks: they see it as /pch
        self.last_batched = len(built)
        # Longest jobs first (a compile alone, then the most cases) keeps both cores busy at the end.
        order = [(*t, built.get(t[0])) for t in sorted(tasks, key=lambda t: (t[0] in built, -len(t[3])))]
        out: dict[int, dict] = {}
        init = functools.partial(_init_worker, self.compiler, self.limits)
        with Progress(len(tasks), "programs", enabled=self.progress) as bar:
            for slot, rec in imap_unordered(_worker_task, order, self.workers, init):
                out[slot] = rec
                bar.update(rec["status"] == "ok")
        return out

    def evaluate(self, predictions: dict[str, str], examples: Sequence[Example]) -> tuple[list[dict], dict]:
        """Per-program records (in ``examples`` order) and a summary.

        ``predictions`` maps example id to full C++ source (already detokenized). Examples
        without test cases are refused (any program, even ``int main(){}``, would pass them).
        """
        empty = [e.id for e in examples if not e.cases]
        if empty:
            raise ValueError(f"{len(empty)} example(s) have no test cases (e.g. {empty[:3]}): "
                             "missing .inp/.out or testcases folder?")
        t0 = time.perf_counter()
        self.last_batched = 0
        tasks = []
        records: list[dict] = []
        for e in examples:
            if e.id not in predictions:
                records.append({"id": e.id, "status": "missing", "first_failing_case": None,
                                "detail": "no prediction"})
            else:
                tasks.append((len(records), e.id, predictions[e.id], e.cases))
                records.append({})
        if tasks:
            for slot, rec in self._map(tasks).items():
                records[slot] = rec
        wall = time.perf_counter() - t0
        return records, self.summarize(records, wall)

    def summarize(self, records: Sequence[dict], wall_s: float) -> dict:
        counts = {s: 0 for s in STATUSES}
        for r in records:
            counts[r["status"]] += 1
        n = len(records)
        return {"n": n, "ok": counts["ok"], "exec_acc": counts["ok"] / n if n else 0.0,
                "compile_rate": (n - counts["compile_error"] - counts["missing"]) / n if n else 0.0,
                "counts": counts, "flags": list(self.compiler.flags), "link_flags": list(self.compiler.link_flags),
                "compiler": self.compiler.version,
                "pch": self.compiler.use_pch, "time_limit_s": self.limits.time_s,
                "sandbox": sandbox.capabilities()["mode"], "workers": self.workers,
                "wall_s": wall_s, "programs_per_s": n / wall_s if wall_s > 0 else 0.0,
                "batched": self.last_batched}

    def evaluate_file(self, predictions_jsonl: str | os.PathLike, examples: Sequence[Example]) -> tuple[list[dict], dict]:
        return self.evaluate(read_predictions(predictions_jsonl), examples)


def read_predictions(path: str | os.PathLike) -> dict[str, str]:
    """Read a JSONL file of ``{"id": ..., "code": ...}``; errors name file and line (a duplicate
    id names both lines)."""
    path = Path(path)
    preds: dict[str, str] = {}
    first_line: dict[str, int] = {}
    if path.is_dir():
        raise ValueError(f"{path}: predictions path is a directory, expected a JSONL file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path}: predictions file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read predictions ({e})") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            pid, code = obj["id"], obj["code"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{n}: expected a JSON object with 'id' and 'code' ({e})") from None
        if not isinstance(pid, str) or not isinstance(code, str):
            raise ValueError(f"{path}:{n}: 'id' and 'code' must be strings")
        if pid in preds:
            raise ValueError(f"{path}:{n}: duplicate id {pid!r} (first on line {first_line[pid]})")
        preds[pid], first_line[pid] = code, n
    return preds
