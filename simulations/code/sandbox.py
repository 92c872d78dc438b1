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
* a private temporary directory, removed afterwards.

**When running as root** (our dev VM, CI containers) three more things happen, because root is
exempt from ``RLIMIT_NPROC`` and can write anywhere:

1. the program runs under its own unprivileged uid/gid (``1_000_000 + parent pid``; one run at
   a time per process), so ``RLIMIT_NPROC`` is enforced (fork bombs stop at ``nproc``), it cannot
   write root-owned files, and *every* process it leaves behind is found by its uid - even a
   grandchild that called ``setsid`` to leave the process group - and SIGKILLed;
2. it gets new network and mount namespaces (``unshare(CLONE_NEWNET | CLONE_NEWNS)``): no
   network at all (only a down loopback), its directory bind-mounted on ``/tmp`` (cwd), and fresh
   small tmpfs mounts over the other world-writable directories (``/var/tmp``, ``/dev/shm``,
   ``/run/lock``), which vanish with the namespace;
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


def _make_preexec(limits: Limits, uid: int | None, run_dir: str, namespaces: bool):
    cpu = limits.cpu_s if limits.cpu_s is not None else int(math.ceil(limits.time_s)) + 1
    rl = [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
          (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
          (resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes)),
          (resource.RLIMIT_NPROC, (limits.nproc, limits.nproc)),
          (resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile)),
          (resource.RLIMIT_CORE, (0, 0))]
    run_b = run_dir.encode()

    def preexec() -> None:  # runs in the child between fork and exec; keep it to syscalls
        if namespaces and not _isolated:
            if (_libc.unshare(CLONE_NEWNS | CLONE_NEWNET) != 0
                    or _libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None) != 0
                    or _libc.mount(run_b, b"/tmp", None, MS_BIND, None) != 0):
                os._exit(125)
            for d in _TMPFS_DIRS:
                if os.path.isdir(d):
                    _libc.mount(b"tmpfs", d.encode(), b"tmpfs", 0, b"size=1m,nr_inodes=64")
            os.chdir("/tmp")
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


def _kill_all(uid: int | None, sid: int, me: int) -> None:
    """SIGKILL every process of the run until none is left; reap those that are our children."""
    deadline = time.monotonic() + 5.0
    while True:
        procs = _procs_of(uid, None if uid is not None else sid)
        for pid, ppid, state in procs:
            if state != "Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if ppid == me:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
        if not procs:
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"could not kill sandbox processes {[p for p, _, _ in procs]}")
        time.sleep(0.002)


def run(argv: Sequence[str], stdin: bytes | str = b"", limits: Limits = Limits(),
        files: dict[str, str | os.PathLike] | None = None) -> RunResult:
    """Run ``argv`` (no shell) in a fresh private directory under ``limits``.

    ``files`` maps names to host paths copied into the directory first (e.g. the binary:
    ``run(["./prog"], files={"prog": path})``). Returns the captured, capped output.
    """
    caps = capabilities()
    if isinstance(stdin, str):
        stdin = stdin.encode()
    with _lock:
        uid = UID_BASE + os.getpid() if caps["root"] else None
        run_dir = tempfile.mkdtemp(dir=_sandbox_root())
        try:
            for name, src in (files or {}).items():
                dst = os.path.join(run_dir, name)
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o755)
            if uid is not None:
                os.chown(run_dir, uid, uid)
            with tempfile.TemporaryFile(dir=_sandbox_root()) as fin, \
                    tempfile.TemporaryFile(dir=_sandbox_root()) as fout, \
                    tempfile.TemporaryFile(dir=_sandbox_root()) as ferr:
                fin.write(stdin)
                fin.seek(0)
                per_run_ns = caps["namespaces"] and not _isolated
                home = "/tmp" if per_run_ns else run_dir
                env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": home, "TMPDIR": home}
                t0 = time.monotonic()
                try:
                    proc = subprocess.Popen(list(argv), stdin=fin, stdout=fout, stderr=ferr, cwd=run_dir,
                                            env=env, start_new_session=True, close_fds=True,
                                            preexec_fn=_make_preexec(limits, uid, run_dir, caps["namespaces"]))
                except OSError as e:
                    raise SandboxError(f"could not start {argv[0]}: {e}") from e
                timed_out = False
                try:
                    rc = proc.wait(timeout=limits.time_s)
                except subprocess.TimeoutExpired:
                    timed_out = True
                wall = time.monotonic() - t0
                _kill_all(uid, proc.pid, os.getpid())
                rc = proc.wait()
                if _isolated and uid is not None:
                    _sweep_tmp(uid)
                if rc == 125 and per_run_ns:
                    raise SandboxError("namespace set-up failed in the sandboxed child")
                if rc in (-signal.SIGXCPU, -signal.SIGKILL) and wall >= limits.time_s * 0.9:
                    timed_out = True  # the CPU rlimit fired
                fout.seek(0)
                out = fout.read(limits.output_bytes + 1)
                ferr.seek(0)
                err = ferr.read(limits.stderr_keep)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    limited = rc == -signal.SIGXFSZ or len(out) >= limits.output_bytes
    return RunResult(rc, out[:limits.output_bytes], err, timed_out, limited, wall)
