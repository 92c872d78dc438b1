"""Run one untrusted binary with limits, in a private directory, and leave nothing behind.

What a run gets (paper-notes §4 "evaluation protocol": time, memory, process and output limits):

* no shell: an argument list goes straight to ``execve``; a scrubbed environment
  (``PATH=/usr/bin:/bin``, ``LANG=C``, ``HOME``/``TMPDIR`` = its directory);
* a new session (``setsid``), so its process group can be killed as a whole;
* ``RLIMIT_CPU`` (time limit + 1 s), ``RLIMIT_AS`` (memory), ``RLIMIT_FSIZE`` (output cap: stdout
  and every file it writes), ``RLIMIT_NPROC`` (processes *and* threads), ``RLIMIT_NOFILE``,
  ``RLIMIT_CORE = 0``; a wall-clock limit enforced by the parent;
* stdin from an unlinked temporary file (a program that waits on stdin reads EOF instead of
  blocking); stdout/stderr into unlinked temporary files that it cannot reach by path;
* a private working directory (owned by the sandbox uid), emptied after every run and removed
  at exit; the binary sits read-only beside it (``../prog``).

**When running as root** (our dev VM, CI containers) three more things happen, because root is
exempt from ``RLIMIT_NPROC`` and can write anywhere:

1. the program runs under its own unprivileged uid/gid (``1_000_000 + parent pid``; one run at
   a time per process), so ``RLIMIT_NPROC`` is enforced (fork bombs stop at ``nproc``), it cannot
   write root-owned files, and *every* process it leaves behind is found by its uid - even a
   grandchild that called ``setsid`` to leave the process group - and SIGKILLed;
2. it runs in new network and mount namespaces (``unshare(CLONE_NEWNET | CLONE_NEWNS)``): no
   network at all (only a down loopback), and fresh small tmpfs mounts over the world-writable
   ``/var/tmp``, ``/dev/shm`` and ``/run/lock``, which vanish with the namespace. The
   namespaces are made per run (about 2 ms), or once per evaluator worker process
   (:func:`isolate_current_process`). The one shared world-writable directory left, ``/tmp``,
   is swept after each run for entries owned by the sandbox uid;
3. the parent becomes a child subreaper, so orphaned descendants are reaped, not left as zombies.

**Fallback** (not root, or namespaces not permitted, e.g. a container without CAP_SYS_ADMIN):
no network isolation; without root also no uid switch, so ``RLIMIT_NPROC`` counts all processes
of the calling user, stray processes are found by session id (a descendant that calls ``setsid``
itself escapes that sweep), and the program can write wherever the user can. ``capabilities()``
reports which mode is active; the evaluator records it in its summary.
"""
from __future__ import annotations

import atexit
import ctypes
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = ["Limits", "RunResult", "SandboxError", "run", "capabilities", "stray_processes",
           "isolate_current_process"]

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
PR_SET_CHILD_SUBREAPER = 36
UID_BASE = 1_000_000
_TMPFS_DIRS = ("/var/tmp", "/dev/shm", "/run/lock")

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_caps: dict | None = None
_root_dir: Path | None = None
_isolated = False  # this whole process is already in private net + mount namespaces


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program)."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. ``cpu_s`` defaults to ``ceil(time_s) + 1``."""
    time_s: float = 2.0
    cpu_s: int | None = None
    memory_bytes: int = 1 << 30
    output_bytes: int = 8 << 20
    nproc: int = 16
    nofile: int = 64
    stderr_keep: int = 4096


@dataclass(frozen=True)
class RunResult:
    returncode: int | None      # exit status, or -signal
    stdout: bytes
    stderr: bytes
    timed_out: bool
    output_limited: bool
    wall_s: float

    @property
    def status(self) -> str:
        """``ok`` (exit 0), ``timeout`` or ``runtime_error``."""
        if self.timed_out:
            return "timeout"
        if self.output_limited or self.returncode != 0:
            return "runtime_error"
        return "ok"

    @property
    def detail(self) -> str:
        if self.timed_out:
            return "time limit exceeded"
        if self.output_limited:
            return "output limit exceeded"
        if self.returncode is not None and self.returncode < 0:
            return f"killed by signal {signal.Signals(-self.returncode).name}"
        if self.returncode:
            return f"exit status {self.returncode}"
        return ""


def capabilities() -> dict:
    """``{"root": bool, "namespaces": bool, "mode": str}``; probed once per process."""
    global _caps
    if _caps is None:
        root = os.geteuid() == 0
        ns = False
        if root:
            pid = os.fork()
            if pid == 0:  # probe: can we unshare and mount?
                try:
                    ok = (_libc.unshare(CLONE_NEWNS | CLONE_NEWNET) == 0
                          and _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) == 0
                          and _libc.mount(b"tmpfs", b"/var/tmp", b"tmpfs", 0, b"size=64k") == 0)
                finally:
                    os._exit(0 if ok else 1)
            ns = os.waitpid(pid, 0)[1] == 0
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        mode = ("root: own uid + netns + mountns" if ns else "root: own uid, no namespaces") if root \
            else "unprivileged: rlimits + session kill only"
        _caps = {"root": root, "namespaces": ns, "mode": mode}
    return _caps


def isolate_current_process() -> bool:
    """Move this process (a dedicated worker) into new network and mount namespaces, once.

    Every later :func:`run` then skips the per-run ``unshare`` (about 2 ms each): children
    inherit a network namespace with no interfaces, and fresh tmpfs mounts over ``/var/tmp``,
    ``/dev/shm`` and ``/run/lock``. ``/tmp`` stays shared (callers keep their files there), so
    entries a program leaves at the top of ``/tmp`` are found by owner uid and removed after each
    run. Never call this in a process that needs the network. Returns whether it took effect.
    """
    global _isolated
    if _isolated:
        return True
    if not capabilities()["namespaces"]:
        return False
    if (_libc.unshare(CLONE_NEWNS | CLONE_NEWNET) != 0
            or _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0):
        raise SandboxError(f"unshare/mount failed (errno {ctypes.get_errno()})")
    for d in _TMPFS_DIRS:
        if os.path.isdir(d):
            _libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, b"size=1m,nr_inodes=256")
    _isolated = True
    return True


def _sweep_tmp(uid: int) -> None:
    """Remove top-level ``/tmp`` entries owned by the sandbox uid (isolated-process mode)."""
    for ent in os.scandir("/tmp"):
        try:
            if ent.stat(follow_symlinks=False).st_uid != uid:
                continue
            if ent.is_dir(follow_symlinks=False):
                shutil.rmtree(ent.path, ignore_errors=True)
            else:
                os.unlink(ent.path)
        except OSError:
            pass


def _sandbox_root() -> Path:
    global _root_dir
    if _root_dir is None or not _root_dir.is_dir():
        _root_dir = Path(tempfile.mkdtemp(prefix="cft-sbx-"))
        os.chmod(_root_dir, 0o711)  # traversable, not listable, by the sandbox uid
        atexit.register(shutil.rmtree, _root_dir, True)
    return _root_dir


def _make_preexec(limits: Limits, uid: int | None, per_run_ns: bool):
    cpu = limits.cpu_s if limits.cpu_s is not None else int(math.ceil(limits.time_s)) + 1
    rl = [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
          (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
          (resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes)),
          (resource.RLIMIT_NPROC, (limits.nproc, limits.nproc)),
          (resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile)),
          (resource.RLIMIT_CORE, (0, 0))]
    tmpfs = [d.encode() for d in _TMPFS_DIRS if os.path.isdir(d)]

    def preexec() -> None:  # runs in the child between fork and exec; keep it to syscalls
        if per_run_ns:
            if (_libc.unshare(CLONE_NEWNS | CLONE_NEWNET) != 0
                    or _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0):
                os._exit(125)
            for d in tmpfs:
                _libc.mount(b"tmpfs", d, b"tmpfs", 0, b"size=1m,nr_inodes=64")
        for what, lim in rl:
            resource.setrlimit(what, lim)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

    return preexec


def _procs_of(uid: int | None, sid: int | None) -> list[tuple[int, int, str]]:
    """(pid, ppid, state) of live processes owned by ``uid`` (or in session ``sid``)."""
    out = []
    for ent in os.scandir("/proc"):
        if not ent.name.isdigit():
            continue
        try:
            if uid is not None and ent.stat().st_uid != uid:
                continue
            with open(f"/proc/{ent.name}/stat", "rb") as fh:
                stat = fh.read().decode(errors="replace")
        except OSError:
            continue
        f = stat[stat.rfind(")") + 2:].split()
        state, ppid, s = f[0], int(f[1]), int(f[3])
        if uid is None and s != sid:
            continue
        out.append((int(ent.name), ppid, state))
    return out


def stray_processes(uid: int | None = None, sid: int | None = None) -> list[int]:
    """Pids of non-zombie processes left by a sandbox uid (or session); used by tests."""
    return [p for p, _, st in _procs_of(uid, sid) if st != "Z"]


def _kill_all(uid: int | None, sid: int, main_pid: int) -> None:
    """SIGKILL every process of the run until none is left alive.

    Zombies that are our children are reaped here, except ``main_pid`` (its exit status belongs
    to ``Popen.wait``); orphans were re-parented to us because we are a child subreaper.
    """
    me = os.getpid()
    deadline = time.monotonic() + 5.0
    while True:
        alive = 0
        for pid, ppid, state in _procs_of(uid, None if uid is not None else sid):
            if state == "Z":
                if ppid == me and pid != main_pid:
                    try:
                        os.waitpid(pid, os.WNOHANG)
                    except ChildProcessError:
                        pass
                continue
            alive += 1
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if not alive:
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"could not kill the processes of sandbox uid {uid} / session {sid}")
        time.sleep(0.001)


class _Workspace:
    """This process's sandbox directory, reused across runs (creating and removing a directory
    per run cost more than the run itself): ``<root>/w<pid>/`` (root-owned, 0755) holds the
    read-only binary copies; ``<root>/w<pid>/cwd/`` (owned by the sandbox uid) is the program's
    working directory, emptied after every run. stdin/stdout/stderr are unlinked files."""

    def __init__(self, uid: int | None):
        self.pid = os.getpid()
        self.dir = _sandbox_root() / f"w{self.pid}"
        self.cwd = self.dir / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o755)
        os.chmod(self.cwd, 0o700)
        if uid is not None:
            os.chown(self.cwd, uid, uid)
        self.files = [tempfile.TemporaryFile(dir=_sandbox_root()) for _ in range(3)]
        self.copied: dict[str, tuple] = {}

    def stage(self, name: str, src: str | os.PathLike) -> None:
        st = os.stat(src)
        key = (str(src), st.st_ino, st.st_size, st.st_mtime_ns)
        if self.copied.get(name) != key:
            shutil.copyfile(src, self.dir / name)
            os.chmod(self.dir / name, 0o755)
            self.copied[name] = key

    def clean(self) -> None:
        for ent in os.scandir(self.cwd):
            if ent.is_dir(follow_symlinks=False):
                shutil.rmtree(ent.path, ignore_errors=True)
            else:
                os.unlink(ent.path)
        os.chmod(self.cwd, 0o700)


_ws: _Workspace | None = None


def _workspace(uid: int | None) -> _Workspace:
    global _ws
    if _ws is None or _ws.pid != os.getpid() or not _ws.cwd.is_dir():
        _ws = _Workspace(uid)
    return _ws


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for ``proc`` up to ``timeout`` s without polling; True if it exited."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    finally:
        os.close(fd)


def run(argv: Sequence[str], stdin: bytes | str = b"", limits: Limits = Limits(),
        files: dict[str, str | os.PathLike] | None = None) -> RunResult:
    """Run ``argv`` (no shell) in the private working directory under ``limits``.

    ``files`` maps names to host paths made available read-only beside the working directory,
    as ``../<name>`` (e.g. the binary: ``run(["../prog"], files={"prog": path})``). Returns the
    captured, capped output. One run at a time per process.
    """
    caps = capabilities()
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8", "surrogateescape")
    with _lock:
        uid = UID_BASE + os.getpid() if caps["root"] else None
        ws = _workspace(uid)
        for name, src in (files or {}).items():
            ws.stage(name, src)
        fin, fout, ferr = ws.files
        for f in ws.files:
            f.seek(0)
            f.truncate()
        fin.write(stdin)
        fin.flush()
        fin.seek(0)
        per_run_ns = caps["namespaces"] and not _isolated
        home = str(ws.cwd)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": home, "TMPDIR": home}
        t0 = time.monotonic()
        try:
            proc = subprocess.Popen(list(argv), stdin=fin, stdout=fout, stderr=ferr, cwd=ws.cwd,
                                    env=env, start_new_session=True, close_fds=True,
                                    preexec_fn=_make_preexec(limits, uid, per_run_ns))
        except OSError as e:
            raise SandboxError(f"could not start {argv[0]}: {e}") from e
        timed_out = not _wait(proc, limits.time_s)
        wall = time.monotonic() - t0
        try:
            _kill_all(uid, proc.pid, proc.pid)
            rc = proc.wait()
        finally:
            ws.clean()
            if uid is not None:
                _sweep_tmp(uid)
        if rc == 125 and per_run_ns:
            raise SandboxError("namespace set-up failed in the sandboxed child")
        if rc in (-signal.SIGXCPU, -signal.SIGKILL) and wall >= limits.time_s * 0.9:
            timed_out = True  # the CPU rlimit fired
        fout.seek(0)
        out = fout.read(limits.output_bytes + 1)
        ferr.seek(0)
        err = ferr.read(limits.stderr_keep)
    limited = rc == -signal.SIGXFSZ or len(out) >= limits.output_bytes
    return RunResult(rc, out[:limits.output_bytes], err, timed_out, limited, wall)
