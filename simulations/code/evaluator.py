"""Compile-and-run evaluator: a program is correct iff it compiles and passes every test case.

Protocol (paper-notes §4.1 / §4.2 metric, §5 harness, §6 item 5): pinned g++ flags recorded in
the summary; ``bits/stdc++.h`` precompiled once per (compiler, flags) and cached; binaries and
compiler verdicts cached by content hash; one process per core; every run in the sandbox of
:mod:`simulations.code.sandbox` (2 s per test case by default); byte-exact stdout comparison; a
program stops at its first failing case (as SPoC's ``run_tests`` does).

Flags: ``-std=gnu++11 -O0 -w -pipe``, chosen on the gold programs (check-gold, all of TestW):
``-O0`` is the reference's flagless g++; the SPoC programs predate C++17, and under
``-std=gnu++17`` 20 of 4,784 gold programs fail to compile (``gets`` removed; names such as
``size``, ``gcd``, ``visit`` clash with ``std::``), while ``-O2`` turns the undefined behaviour of
11 more (a non-void function without ``return``, uninitialized reads) into crashes or wrong
output. TestW: 1,744/1,749 pass with these flags, 1,732/1,749 with ``-std=gnu++17 -O2``.

Statuses: ``ok``, ``compile_error``, ``runtime_error`` (non-zero exit, signal, output cap),
``wrong_answer``, ``timeout``, ``missing`` (no prediction for that id).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from . import sandbox
from .data import Example, TestCase

__all__ = ["DEFAULT_FLAGS", "STATUSES", "Compiler", "Evaluator", "default_cache_dir",
           "read_predictions"]

DEFAULT_FLAGS = ("-std=gnu++11", "-O0", "-w", "-pipe")
STATUSES = ("ok", "compile_error", "runtime_error", "wrong_answer", "timeout", "missing")
COMPILE_TIMEOUT_S = 60.0


def default_cache_dir() -> Path:
    """``$COMPOSEDFT_CACHE`` or ``~/.cache/composedft``."""
    env = os.environ.get("COMPOSEDFT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "composedft"


@lru_cache(maxsize=None)
def _compiler_version(cxx: str) -> str:
    try:
        out = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise RuntimeError(f"C++ compiler {cxx!r} not usable: {e}") from e
    return out.splitlines()[0].strip() if out else cxx


def _limit_compiler() -> None:
    # g++ on hostile source: bounded memory, CPU time and output size; its own session so the
    # whole compiler process tree can be killed on timeout.
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (int(COMPILE_TIMEOUT_S), int(COMPILE_TIMEOUT_S) + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 << 20, 512 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _run_compiler(argv: list[str], cwd: str) -> tuple[int, str]:
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_limit_compiler,
                            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"})
    try:
        out, _ = proc.communicate(timeout=COMPILE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.communicate()
        return -9, "compiler timeout"
    return proc.returncode, out.decode("utf-8", "replace")


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


@dataclass(frozen=True)
class Compiler:
    """g++ with pinned flags, a cached precompiled header and content-addressed caches."""
    cache_dir: Path
    flags: tuple[str, ...] = DEFAULT_FLAGS
    cxx: str = "g++"
    use_pch: bool = True

    @property
    def version(self) -> str:
        return _compiler_version(self.cxx)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.version, self.cxx, list(self.flags)]).encode()).hexdigest()[:20]

    def pch_include_dir(self) -> Path | None:
        """Directory holding ``bits/stdc++.h.gch``, built on first use (None if disabled/failed).

        Built in a temporary directory and renamed into place, so concurrent builders never
        leave a half-written header; a checked marker records that g++ actually uses it.
        """
        if not self.use_pch:
            return None
        final = self.cache_dir / "pch" / self.key
        if (final / "OK").exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".build-"))
        try:
            header = _find_stdcxx_header(self.cxx, self.flags)
            (tmp / "bits").mkdir()
            rc, out = _run_compiler([self.cxx, *self.flags, "-x", "c++-header", header,
                                     "-o", str(tmp / "bits" / "stdc++.h.gch")], str(tmp))
            if rc != 0:
                raise RuntimeError(f"building the precompiled header failed: {out[:2000]}")
            probe = tmp / "probe.cpp"
            probe.write_text("#include <bits/stdc++.h>\nint main(){return 0;}\n")
            rc, out = _run_compiler([self.cxx, *self.flags, "-Winvalid-pch", "-H", "-fsyntax-only",
                                     "-I", str(tmp), str(probe)], str(tmp))
            if rc != 0 or not re.search(r"^! .*stdc\+\+\.h\.gch", out, re.M):
                raise RuntimeError(f"g++ does not use the precompiled header: {out[:2000]}")
            probe.unlink()
            (tmp / "OK").write_text(self.version + "\n" + " ".join(self.flags) + "\n")
            try:
                os.rename(tmp, final)
            except OSError:  # another process won the race; use its copy
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final if (final / "OK").exists() else None

    def _argv(self, src: str, extra: Sequence[str]) -> list[str]:
        argv = [self.cxx, *self.flags]
        inc = self.pch_include_dir()
        if inc is not None:
            argv += ["-I", str(inc)]
        return argv + list(extra) + [src]

    def compile(self, source: str) -> tuple[Path | None, str]:
        """(binary path, "") or (None, compiler message); both outcomes are cached by hash."""
        h = hashlib.sha256((self.key + "\0" + source).encode("utf-8", "surrogateescape")).hexdigest()
        binp = self.cache_dir / "bin" / h[:2] / h
        errp = binp.with_suffix(".err")
        if binp.exists():
            return binp, ""
        if errp.exists():
            return None, errp.read_text(errors="replace")
        with tempfile.TemporaryDirectory(prefix="cft-cc-") as td:
            (Path(td) / "prog.cpp").write_bytes(source.encode("utf-8", "surrogateescape"))
            rc, out = _run_compiler(self._argv("prog.cpp", ["-o", "prog"]), td)
            if rc == 0 and (Path(td) / "prog").exists():
                binp.parent.mkdir(parents=True, exist_ok=True)
                tmp = binp.parent / f".tmp-{os.getpid()}-{h}"
                shutil.move(str(Path(td) / "prog"), tmp)
                os.replace(tmp, binp)
                return binp, ""
        msg = out[-4000:] or f"g++ exit status {rc}"
        _atomic_write(errp, msg.encode())
        return None, msg

    def syntax_ok(self, source: str) -> bool:
        """Does ``source`` pass ``g++ -fsyntax-only`` (with the precompiled header)? Cached."""
        h = hashlib.sha256((self.key + "\0syntax\0" + source).encode("utf-8", "surrogateescape")).hexdigest()
        p = self.cache_dir / "syntax" / h[:2] / h
        if p.exists():
            return p.read_bytes() == b"1"
        with tempfile.TemporaryDirectory(prefix="cft-cc-") as td:
            (Path(td) / "prog.cpp").write_bytes(source.encode("utf-8", "surrogateescape"))
            rc, _ = _run_compiler(self._argv("prog.cpp", ["-fsyntax-only"]), td)
        _atomic_write(p, b"1" if rc == 0 else b"0")
        return rc == 0


def _find_stdcxx_header(cxx: str, flags: Sequence[str]) -> str:
    proc = subprocess.run([cxx, *flags, "-x", "c++", "-E", "-H", "-", "-o", os.devnull],
                          input="#include <bits/stdc++.h>\n", capture_output=True, text=True, timeout=60)
    m = re.search(r"^\. (\S*bits/stdc\+\+\.h)$", proc.stderr, re.M)
    if not m:
        raise RuntimeError(f"cannot locate bits/stdc++.h with {cxx}: {proc.stderr[:500]}")
    return m.group(1)


# ---------------------------------------------------------------------------------------------

def _check_program(compiler: Compiler, pid: str, source: str, cases: Sequence[TestCase],
                   limits: sandbox.Limits) -> dict:
    binp, msg = compiler.compile(source)
    if binp is None:
        return {"id": pid, "status": "compile_error", "first_failing_case": None, "detail": msg[:1000]}
    for i, case in enumerate(cases):
        r = sandbox.run(["../prog"], case.input, limits, files={"prog": binp})
        if r.status != "ok":
            detail = r.detail + ((": " + r.stderr.decode("utf-8", "replace")[:300]) if r.stderr else "")
            return {"id": pid, "status": r.status, "first_failing_case": i, "detail": detail}
        if r.stdout != case.output.encode("utf-8", "surrogateescape"):
            got = r.stdout[:200].decode("utf-8", "replace")
            return {"id": pid, "status": "wrong_answer", "first_failing_case": i,
                    "detail": f"expected {case.output[:200]!r}, got {got!r}"}
    return {"id": pid, "status": "ok", "first_failing_case": None, "detail": ""}


_WORKER: dict = {}


def _init_worker(compiler: Compiler, limits: sandbox.Limits) -> None:
    _WORKER["compiler"], _WORKER["limits"] = compiler, limits
    sandbox.isolate_current_process()  # pool workers only: one netns/mountns per worker


def _worker_task(task: tuple[str, str, tuple[TestCase, ...]]) -> dict:
    pid, source, cases = task
    try:
        return _check_program(_WORKER["compiler"], pid, source, cases, _WORKER["limits"])
    except Exception as e:  # never lose the whole evaluation to one program
        return {"id": pid, "status": "runtime_error", "first_failing_case": None,
                "detail": f"evaluator error: {type(e).__name__}: {e}"}


class Evaluator:
    """Evaluate C++ predictions against examples' test cases, in parallel."""

    def __init__(self, workers: int | None = None, time_limit_s: float = 2.0,
                 cache_dir: str | os.PathLike | None = None, flags: Sequence[str] = DEFAULT_FLAGS,
                 memory_bytes: int = 1 << 30, output_bytes: int = 8 << 20, use_pch: bool = True,
                 cxx: str = "g++"):
        self.workers = workers or os.cpu_count() or 1
        self.limits = sandbox.Limits(time_s=time_limit_s, memory_bytes=memory_bytes, output_bytes=output_bytes)
        self.compiler = Compiler(Path(cache_dir) if cache_dir else default_cache_dir(), tuple(flags), cxx, use_pch)

    def _map(self, tasks: list[tuple[str, str, tuple[TestCase, ...]]]) -> list[dict]:
        self.compiler.pch_include_dir()  # build once, before the workers start
        sandbox.capabilities()
        sandbox._sandbox_root()  # shared by forked workers, removed at exit by this process
        if self.workers == 1 or len(tasks) <= 1:
            _WORKER["compiler"], _WORKER["limits"] = self.compiler, self.limits  # per-run namespaces
            return [_worker_task(t) for t in tasks]
        # Longest jobs first keeps both cores busy at the end.
        order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i][2]))
        ctx = mp.get_context("fork")
        with ctx.Pool(min(self.workers, len(tasks)), initializer=_init_worker,
                      initargs=(self.compiler, self.limits)) as pool:
            res = pool.map(_worker_task, [tasks[i] for i in order], chunksize=1)
        out: list[dict] = [{}] * len(tasks)
        for i, r in zip(order, res):
            out[i] = r
        return out

    def evaluate(self, predictions: dict[str, str], examples: Sequence[Example]) -> tuple[list[dict], dict]:
        """Per-program records (in ``examples`` order) and a summary.

        ``predictions`` maps example id to full C++ source (already detokenized).
        """
        t0 = time.perf_counter()
        tasks, slots = [], []
        records: list[dict] = []
        for e in examples:
            if e.id not in predictions:
                records.append({"id": e.id, "status": "missing", "first_failing_case": None,
                                "detail": "no prediction"})
            else:
                slots.append(len(records))
                records.append({})
                tasks.append((e.id, predictions[e.id], e.cases))
        for slot, rec in zip(slots, self._map(tasks)):
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
                "counts": counts, "flags": list(self.compiler.flags), "compiler": self.compiler.version,
                "pch": self.compiler.use_pch, "time_limit_s": self.limits.time_s,
                "sandbox": sandbox.capabilities()["mode"], "workers": self.workers,
                "wall_s": wall_s, "programs_per_s": n / wall_s if wall_s > 0 else 0.0}

    def evaluate_file(self, predictions_jsonl: str | os.PathLike, examples: Sequence[Example]) -> tuple[list[dict], dict]:
        return self.evaluate(read_predictions(predictions_jsonl), examples)


def read_predictions(path: str | os.PathLike) -> dict[str, str]:
    """Read a JSONL file of ``{"id": ..., "code": ...}``; errors name file and line."""
    path = Path(path)
    preds: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path}: predictions file not found") from None
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
        preds[pid] = code
    return preds
