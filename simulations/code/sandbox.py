"""Run one untrusted binary (or the compiler on untrusted source) with limits, and leave nothing.

The guarantees, the threat model and the fallbacks are in docs/sandbox.md; in short, as root
with namespaces (our dev VM, CI):

* **isolation** (§2): each run is chrooted into a jail (:func:`.sandbox_ns.build_jail`) that
  shows only the toolchain (``/usr``, ``/etc``), a few devices, the precompiled header and the
  run's own directory ``/box``: not the data folder, the predictions, the caches, the repository
  or other workers. The jail lives in the worker's private mount + network namespace (no network);
  each run adds fresh PID and IPC namespaces, so every process and SysV IPC object of a run dies
  with it;
* **identity** (§2): an unprivileged uid (``1_000_000 + worker pid``) with
  ``PR_SET_NO_NEW_PRIVS`` (setuid binaries do not elevate), so all its processes are found by uid;
  the worker is a child subreaper and an init process inside the PID namespace reaps orphans;
* **limits** (§3): CPU time of the whole run (all processes; rusage plus polling) decides
  ``timeout``, with a wall-clock backstop (``3 * time_s + 2`` s by default) for programs that
  sleep; total resident memory of the run (polled; ``RLIMIT_AS`` per process as a hard bound);
  total disk of ``/box`` (a tmpfs of ``disk_bytes``); output (``RLIMIT_FSIZE``); processes
  (``RLIMIT_NPROC``, per uid); no core dumps; stdin is a file (EOF, never blocks).

Fallback (not root, or no namespaces, §4): no jail and no network isolation; rlimits, a new
session, polling of total memory and disk, and (as root) the uid switch still apply.
:func:`capabilities` says which mode is active; the evaluator records it in its summary.
"""
from __future__ import annotations

import math
import os
import pickle
import resource
import select
import shutil
import signal
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Sequence

from . import sandbox_ns as ns
from .sandbox_ns import SandboxError
from .sandbox_ws import Workspace, sandbox_root

__all__ = ["Limits", "RunResult", "SandboxError", "run", "capabilities", "stray_processes",
           "isolate_current_process", "configure", "kill_all_of_this_process", "sandbox_root", "UID_BASE"]

UID_BASE = 1_000_000
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_STATUS = struct.Struct("<id")  # raw wait status of the program, CPU seconds of the run

_lock = threading.Lock()
_caps: dict | None = None
_binds: dict[str, str] = {}
_isolated = False
_ws: Workspace | None = None


@dataclass(frozen=True)
class Limits:
    """Limits of one run (docs/sandbox.md §3). ``cpu_s``: per-process ``RLIMIT_CPU``, default
    ``ceil(time_s) + 1``; ``wall_s``: backstop, default ``3 * time_s + 2``."""
    time_s: float = 2.0
    cpu_s: int | None = None
    memory_bytes: int = 1 << 30
    output_bytes: int = 8 << 20
    disk_bytes: int = 64 << 20
    nproc: int = 16
    nofile: int = 64
    stderr_keep: int = 4096
    wall_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("time_s", "memory_bytes", "output_bytes", "disk_bytes", "nproc", "nofile",
                     "stderr_keep", "cpu_s", "wall_s"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"Limits.{name}: must be a positive finite number, got {v!r}")

    @property
    def wall_limit(self) -> float:
        return self.wall_s if self.wall_s is not None else 3 * self.time_s + 2


@dataclass(frozen=True)
class RunResult:
    returncode: int | None      # exit status, or -signal
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_limited: bool
    wall_s: float
    cpu_s: float = 0.0
    memory_limited: bool = False
    files: dict = field(default_factory=dict)   # collected regular files of /box, name -> bytes

    @property
    def status(self) -> str:
        """``ok`` (exit 0), ``timeout`` or ``runtime_error``."""
        if self.timed_out:
            return "timeout"
        if self.output_limited or self.memory_limited or self.returncode != 0:
            return "runtime_error"
        return "ok"

    @property
    def detail(self) -> str:
        if self.timed_out:
            return "time limit exceeded"
        if self.output_limited:
            return "output limit exceeded"
        if self.memory_limited:
            return "memory limit exceeded"
        if self.returncode is not None and self.returncode < 0:
            return f"killed by signal {signal.Signals(-self.returncode).name}"
        if self.returncode:
            return f"exit status {self.returncode}"
        return ""


def capabilities() -> dict:
    """``{"root", "namespaces", "mode"}``; probed once per process (docs/sandbox.md §4)."""
    global _caps
    if _caps is None:
        root = os.geteuid() == 0
        nsok = root and ns.probe()
        if root:
            ns.prctl(ns.PR_SET_CHILD_SUBREAPER, 1)
        mode = ("root: own uid + jail (mount/pid/ipc/net namespaces)" if nsok else
                "root: own uid, no namespaces") if root else "unprivileged: rlimits + session kill only"
        _caps = {"root": root, "namespaces": nsok, "mode": mode}
    return _caps


def configure(binds: dict[str, str | os.PathLike]) -> None:
    """Directories shown read-only in every later jail (e.g. ``{"pch": dir}``), before isolating."""
    _binds.update({k: str(v) for k, v in binds.items()})


def _uid() -> int | None:
    return UID_BASE + os.getpid() if capabilities()["root"] else None


def _workspace() -> Workspace:
    global _ws
    if _ws is None or _ws.pid != os.getpid():
        _ws = Workspace(_uid(), jailed=_isolated)
    return _ws


def isolate_current_process() -> bool:
    """Move this process (a dedicated worker) into private mount + network namespaces and build
    its jail, once. Never call it in a process that needs the network or other mounts' changes.
    Returns whether it took effect (False: the fallback of docs/sandbox.md §4)."""
    global _isolated, _ws
    if _isolated:
        return True
    if not capabilities()["namespaces"]:
        return False
    ns.unshare(ns.CLONE_NEWNS | ns.CLONE_NEWNET)
    ns.make_mounts_private()
    _isolated = True
    _ws = Workspace(_uid(), jailed=True, binds=dict(_binds))
    return True


def stray_processes(uid: int | None = None, sid: int | None = None) -> list[int]:
    """Pids of non-zombie processes left by a sandbox uid (or session); used by tests."""
    return [p for p, _, st, _, _ in ns.procs_of(uid, sid) if st != "Z"]


def kill_all_of_this_process() -> None:
    """Kill every sandboxed process this process started (signal handlers call this)."""
    if capabilities()["root"]:
        for pid in stray_processes(_uid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _rlimits(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    cpu = limits.cpu_s if limits.cpu_s is not None else int(math.ceil(limits.time_s)) + 1
    return [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
            (resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes)),
            (resource.RLIMIT_NPROC, (limits.nproc, limits.nproc)),
            (resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile)),
            (resource.RLIMIT_CORE, (0, 0))]


def _drop_privileges(uid: int | None) -> None:
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    ns.prctl(ns.PR_SET_NO_NEW_PRIVS, 1)


def _make_preexec(limits: Limits, uid: int | None, jail: str | None, status_w: int):
    """The child's set-up between fork and exec (docs/sandbox.md §2).

    Jailed: the child (A, outside) enters new PID + IPC namespaces and the chroot, then forks B,
    the namespace's init (drops privileges, reaps everything, reports the program's wait status
    and the run's CPU time on ``status_w``), which forks C, the program (rlimits, then exec).
    A and B never return from here (returning would exec ``argv``).
    """
    rl = _rlimits(limits)

    def program() -> None:  # C (or the only child in the fallback); returns -> exec
        try:
            ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
            if jail is None:
                _drop_privileges(uid)
            else:
                os.close(status_w)
            for what, lim in rl:
                resource.setrlimit(what, lim)
        except BaseException:
            os._exit(125)

    def preexec() -> None:
        if jail is None:
            return program()
        ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
        ns.unshare(ns.CLONE_NEWPID | ns.CLONE_NEWIPC)
        ns.enter_jail(jail)
        b = os.fork()
        if b:  # A: wait for the namespace's init, then leave
            os.closerange(3, 65536)
            os.waitpid(b, 0)
            os._exit(0)
        try:  # B: init of the PID namespace
            ns.prctl(ns.PR_SET_DUMPABLE, 0)
            _drop_privileges(uid)
            ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
            c = os.fork()
        except BaseException:
            os._exit(125)
        if c == 0:
            return program()
        os.closerange(3, status_w)
        os.closerange(status_w + 1, 65536)
        cpu, status = 0.0, 0
        while True:
            try:
                pid, st, ru = os.wait4(-1, 0)
            except ChildProcessError:
                break
            cpu += ru.ru_utime + ru.ru_stime
            if pid == c:
                status = st
                break
        os.write(status_w, _STATUS.pack(status, cpu))
        os._exit(0)

    return preexec


def _monitor(proc: subprocess.Popen, limits: Limits, uid: int | None, ws: Workspace) -> tuple[str, float]:
    """Wait for the run, polling its processes' total CPU and memory (and disk without a jail).
    Returns (verdict: "" | "timeout" | "memory" | "disk", CPU seconds seen by polling)."""
    t0 = time.monotonic()
    tick, cpu = 0.002, 0.0
    fd = os.pidfd_open(proc.pid)
    try:
        while True:
            left = limits.wall_limit - (time.monotonic() - t0)
            if left <= 0:
                return "timeout", cpu
            if select.select([fd], [], [], min(tick, left))[0]:
                return "", cpu
            tick = min(tick * 2, 0.05)
            procs = ns.procs_of(uid, None if uid is not None else proc.pid)
            cpu = max(cpu, sum(p[3] for p in procs) / _TICK)
            if cpu > limits.time_s:
                return "timeout", cpu
            # B (the namespace's init, a fork of this process) is excluded: its pages are ours.
            if sum(p[4] for p in procs if p[1] != proc.pid) * _PAGE > limits.memory_bytes:
                return "memory", cpu
            if not ws.jailed and ws.disk_used() > limits.disk_bytes:
                return "disk", cpu
    finally:
        os.close(fd)


def _run_here(argv: Sequence[str], stdin: bytes, limits: Limits, files: dict, collect: Sequence[str]) -> RunResult:
    uid = _uid()
    ws = _workspace()
    for name, src in files.items():
        ws.stage(name, src)
    ws.set_disk(limits.disk_bytes)
    fin, fout, ferr = ws.reset_io(stdin)
    status_r, status_w = os.pipe()
    env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": ws.home, "TMPDIR": ws.home}
    t0 = time.monotonic()
    proc = None
    try:
        try:
            proc = subprocess.Popen(
                list(argv), stdin=fin, stdout=fout, stderr=ferr, env=env, start_new_session=True,
                cwd=None if ws.jailed else ws.cwd, close_fds=True, pass_fds=(status_w,),
                preexec_fn=_make_preexec(limits, uid, str(ws.jail) if ws.jailed else None, status_w))
        except (OSError, subprocess.SubprocessError) as e:
            raise SandboxError(f"could not start {argv[0]}: {e}") from e
        finally:
            os.close(status_w)
        verdict, polled_cpu = _monitor(proc, limits, uid, ws)
        wall = time.monotonic() - t0
        ns.kill_run(uid, proc.pid, proc.pid)
        _, st, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(st)
        if ws.jailed:
            raw = os.read(status_r, _STATUS.size)
            st, cpu = _STATUS.unpack(raw) if len(raw) == _STATUS.size else (signal.SIGKILL, 0.0)
        else:
            cpu = ru.ru_utime + ru.ru_stime
        rc = os.waitstatus_to_exitcode(st)
        collected = {n: ws.collect(n, limits.output_bytes) for n in collect}
    finally:
        os.close(status_r)
        if proc is not None and proc.returncode is None:
            ns.kill_run(uid, proc.pid, proc.pid)
            proc.wait()
        ws.clean()
    if rc == 125 and ws.jailed and verdict == "":
        raise SandboxError("sandbox set-up failed in the child")
    cpu = max(cpu, polled_cpu)
    timed_out = verdict == "timeout" or rc == -signal.SIGXCPU or cpu > limits.time_s
    fout.seek(0)
    out = fout.read(limits.output_bytes + 1)
    ferr.seek(0)
    err = ferr.read(limits.stderr_keep)
    limited = rc == -signal.SIGXFSZ or len(out) >= limits.output_bytes or verdict == "disk"
    return RunResult(rc, out[:limits.output_bytes], err, timed_out, limited, wall, cpu,
                     verdict == "memory", {k: v for k, v in collected.items() if v is not None})


def _run_in_helper(*args) -> RunResult:
    """Run in a forked helper that isolates itself (this process keeps its network and mounts)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
            isolate_current_process()
            data = pickle.dumps(("ok", _run_here(*args)))
        except BaseException as e:
            data = pickle.dumps(("err", f"{type(e).__name__}: {e}"))
        with os.fdopen(w, "wb") as fh:
            fh.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    shutil.rmtree(sandbox_root() / f"w{pid}", ignore_errors=True)  # empty dirs, host view
    if not data:
        raise SandboxError("the sandbox helper died")
    kind, val = pickle.loads(data)
    if kind == "err":
        raise SandboxError(val)
    return val


def run(argv: Sequence[str], stdin: bytes | str = b"", limits: Limits = Limits(),
        files: dict[str, str | os.PathLike | bytes] | None = None, collect: Sequence[str] = ()) -> RunResult:
    """Run ``argv`` (no shell) in the sandbox under ``limits``.

    ``files`` maps names to host paths (or bytes) made available read-only beside the working
    directory, as ``../<name>`` (e.g. the binary: ``run(["../prog"], files={"prog": path})``).
    ``collect`` names regular files of the working directory returned in ``RunResult.files``
    (e.g. the compiler's output). One run at a time per process.
    """
    caps = capabilities()
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8", "surrogateescape")
    with _lock:
        sandbox_root()
        if caps["namespaces"] and not _isolated:
            return _run_in_helper(argv, stdin, limits, dict(files or {}), tuple(collect))
        return _run_here(argv, stdin, limits, dict(files or {}), tuple(collect))

