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
  ``timeout``, with a wall-clock backstop (``10 * time_s + 5`` s by default) for programs that
  sleep; total resident memory of the run (polled; ``RLIMIT_AS`` per process as a hard bound);
  total disk of ``/box`` (a tmpfs of ``disk_bytes``); output (``RLIMIT_FSIZE``); processes
  (``RLIMIT_NPROC``, per uid); no core dumps; stdin is a file (EOF, never blocks).

Fallback (not root, or no namespaces, §4): no jail and no network isolation; rlimits, a new
session, polling of total memory and disk, and (as root) the uid switch still apply.
:func:`capabilities` says which mode is active; the evaluator records it in its summary.
"""
from __future__ import annotations

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
from pathlib import Path
from typing import Sequence

from . import sandbox_ns as ns
from .sandbox_init import build_init
from .sandbox_limits import Limits, RunResult, rlimits as _rlimits
from .sandbox_ns import SandboxError
from . import sandbox_ws
from .sandbox_ws import Workspace, sandbox_root

__all__ = ["Limits", "RunResult", "SandboxError", "run", "capabilities", "stray_processes",
           "isolate_current_process", "configure", "prepare", "stop_helper", "kill_all_of_this_process", "sandbox_root", "UID_BASE", "UID_SPAN"]

# Sandbox uids are UID_BASE + worker pid; the environment can move the range (tests do, so that
# other evaluations on a shared machine are not mistaken for leftovers of theirs).
UID_BASE = int(os.environ.get("COMPOSEDFT_SANDBOX_UID_BASE", 1_000_000))
UID_SPAN = 1 << 22  # pid_max is at most 2**22
FIRST_TICK = 0.01   # s before the first poll of a run's processes (_monitor)
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")
_STATUS = struct.Struct("<iid")  # init record: kind, wait status or errno, CPU seconds

_lock = threading.Lock()
_caps: dict | None = None
_binds: dict[str, str] = {}
_isolated = False
_init_path: Path | None = None
_ws: Workspace | None = None


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


def prepare() -> None:
    """Create the sandbox directory and build the run init (before forking workers: they share both)."""
    global _init_path
    sandbox_root()
    if capabilities()["namespaces"] and (_init_path is None or not _init_path.exists()):
        _init_path = build_init(sandbox_root())


def configure(binds: dict[str, str | os.PathLike | None]) -> None:
    """Directories shown read-only in every later jail (e.g. ``{"pch": dir}``), before isolating;
    ``None`` removes a name (a jail cannot mount a directory that was deleted since)."""
    for k, v in binds.items():
        if v is None:
            _binds.pop(k, None)
        else:
            _binds[k] = str(v)


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
    _isolated = sandbox_ws.keep_root = True
    prepare()
    _ws = Workspace(_uid(), jailed=True, binds=dict(_binds))
    return True


def stray_processes(uid: int | None = None, sid: int | None = None) -> list[int]:
    """Pids of non-zombie processes left by a sandbox uid (or session); used by tests."""
    return [p for p, _, st, _, _ in ns.procs_of(uid, sid) if st != "Z"]


def kill_all_of_this_process() -> None:
    """Kill every sandboxed process this process started (signal handlers call this)."""
    stop_helper()
    if capabilities()["root"]:
        for pid in stray_processes(_uid()):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _drop_privileges(uid: int | None) -> None:
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    ns.prctl(ns.PR_SET_NO_NEW_PRIVS, 1)


def _preexec_fallback(limits: Limits, uid: int | None):
    """Without a jail: the child itself takes the rlimits and the sandbox uid, then execs."""
    rl = _rlimits(limits)

    def preexec() -> None:
        ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
        _drop_privileges(uid)
        for what, lim in rl:
            resource.setrlimit(what, lim)

    return preexec


def _init_argv(jail: Path, limits: Limits, uid: int, status_w: int, argv: Sequence[str]) -> list[str]:
    """The command line of :mod:`.sandbox_init` for one jailed run."""
    lim = dict(_rlimits(limits))
    return [str(_init_path), str(jail), str(uid), str(status_w), *(str(lim[r][0]) for r in (
        resource.RLIMIT_CPU, resource.RLIMIT_AS, resource.RLIMIT_FSIZE, resource.RLIMIT_NPROC,
        resource.RLIMIT_NOFILE)), *argv]


def _read_records(fd: int) -> tuple[int, float, bool]:
    """(wait status, CPU s, found) from the init's records; SandboxError if the program did not
    exec. ``found`` is False when the init died before reporting (killed by us, or broken)."""
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    st, cpu, found = signal.SIGKILL, 0.0, False  # no record: the init (and the program) was killed
    for off in range(0, len(data) - _STATUS.size + 1, _STATUS.size):
        kind, value, c = _STATUS.unpack_from(data, off)
        if kind == 1:
            raise SandboxError(f"could not start the program: {os.strerror(value)}")
        st, cpu, found = value, c, True
    return st, cpu, found


def _monitor(proc: subprocess.Popen, limits: Limits, uid: int | None, ws: Workspace) -> tuple[str, float]:
    """Wait for the run, polling its processes' total CPU and memory (and disk without a jail).
    Returns (verdict: "" | "timeout" | "memory" | "disk", CPU seconds seen by polling)."""
    t0 = time.monotonic()
    # The first look at /proc comes after FIRST_TICK: most test cases are done by then, and a scan
    # of /proc costs about as much as such a run. Nothing is lost in between: RLIMIT_CPU and
    # RLIMIT_AS bound every process, and later gaps between polls are longer (up to 50 ms).
    tick, cpu = FIRST_TICK, 0.0
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
            if sum(p[4] for p in procs) * _PAGE > limits.memory_bytes:
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
            if ws.jailed:
                cmd, pre = _init_argv(ws.jail, limits, uid, status_w, argv), None  # no preexec: vfork
            else:
                cmd, pre = list(argv), _preexec_fallback(limits, uid)
            proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=ferr, env=env, start_new_session=True,
                                    cwd=None if ws.jailed else ws.cwd, close_fds=True,
                                    pass_fds=(status_w,) if ws.jailed else (), preexec_fn=pre)
        except (OSError, subprocess.SubprocessError) as e:
            raise SandboxError(f"could not start {argv[0]}: {e}") from e
        finally:
            os.close(status_w)
        verdict, polled_cpu = _monitor(proc, limits, uid, ws)
        wall = time.monotonic() - t0
        # "": the init has exited (its pidfd is readable), so this reaps it without waiting
        reaped, st, ru = os.wait4(proc.pid, os.WNOHANG) if verdict == "" else (0, 0, None)
        # The jailed init exits 0 only after its namespace's init B was reaped, and B's exit
        # completes only once every process of its PID namespace is gone (pid_namespaces(7)):
        # nothing of the run is left to find. Otherwise (limits, a failed init, no jail) kill.
        if not (ws.jailed and reaped == proc.pid and os.waitstatus_to_exitcode(st) == 0):
            ns.kill_run(uid, proc.pid, proc.pid)
            if reaped != proc.pid:
                _, st, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(st)
        found = True
        if ws.jailed:
            st, cpu, found = _read_records(status_r)
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
    if not found and verdict == "":
        raise SandboxError(f"the sandbox init failed before the program ran (exit {proc.returncode})")
    cpu = max(cpu, polled_cpu)
    timed_out = verdict == "timeout" or rc == -signal.SIGXCPU or cpu > limits.time_s
    fout.seek(0)
    out = fout.read(limits.output_bytes + 1)
    ferr.seek(0)
    err = ferr.read(limits.stderr_keep)
    limited = rc == -signal.SIGXFSZ or len(out) >= limits.output_bytes or verdict == "disk"
    return RunResult(rc, out[:limits.output_bytes], err, timed_out, limited, wall, cpu,
                     verdict == "memory", {k: v for k, v in collected.items() if v is not None})


_helper: tuple | None = None   # (owner pid, helper pid, to, from, binds of its jail)


def _helper_main(rfd: int, wfd: int) -> None:
    """The helper process: isolate once, then serve runs sent as pickles until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, lambda *_: (kill_all_of_this_process(), os._exit(143)))
    ns.prctl(ns.PR_SET_PDEATHSIG, signal.SIGKILL)
    rf, wf = os.fdopen(rfd, "rb"), os.fdopen(wfd, "wb")
    isolate_current_process()
    while True:
        try:
            args = pickle.load(rf)
        except (EOFError, OSError):
            os._exit(0)
        try:
            out = ("ok", _run_here(*args))
        except BaseException as e:
            out = ("err", f"{type(e).__name__}: {e}")
        pickle.dump(out, wf)
        wf.flush()


def _start_helper() -> tuple:
    r1, w1 = os.pipe()   # requests
    r2, w2 = os.pipe()   # results
    pid = os.fork()
    if pid == 0:
        os.close(w1)
        os.close(r2)
        try:
            _helper_main(r1, w2)
        finally:
            os._exit(1)
    os.close(r1)
    os.close(w2)
    return os.getpid(), pid, os.fdopen(w1, "wb"), os.fdopen(r2, "rb"), dict(_binds)


def _run_in_helper(*args) -> RunResult:
    """Run in a long-lived forked helper that isolated itself (this process keeps its network
    and mounts; building a jail per run would cost more than the run)."""
    global _helper
    if _helper is not None and _helper[0] == os.getpid() and _helper[4] != _binds:
        stop_helper()   # its jail was built with other read-only binds (another PCH)
    if _helper is None or _helper[0] != os.getpid():
        _helper = _start_helper()
    _, pid, to, frm, _ = _helper
    try:
        pickle.dump(args, to)
        to.flush()
        kind, val = pickle.load(frm)
    except (EOFError, OSError, pickle.UnpicklingError) as e:
        stop_helper()
        raise SandboxError(f"the sandbox helper died ({type(e).__name__})") from None
    if kind == "err":
        raise SandboxError(val)
    return val


def stop_helper() -> None:
    """Stop this process's helper (its runs are killed by its SIGTERM handler)."""
    global _helper
    if _helper is not None and _helper[0] == os.getpid():
        _, pid, to, frm, _ = _helper
        try:
            os.kill(pid, signal.SIGTERM)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        shutil.rmtree(sandbox_root() / f"w{pid}", ignore_errors=True)  # empty dirs, host view
        to.close()
        frm.close()
    _helper = None


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
        prepare()
        if caps["namespaces"] and not _isolated:
            return _run_in_helper(argv, stdin, limits, dict(files or {}), tuple(collect))
        return _run_here(argv, stdin, limits, dict(files or {}), tuple(collect))

