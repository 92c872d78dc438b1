"""Kernel plumbing of the sandbox: namespaces, the jail's mounts, and finding a run's processes.

See docs/sandbox.md §2 (isolation) and §4 (fallbacks). Everything here is a thin wrapper over
syscalls (through ``ctypes``; Python 3.11 has no ``os.unshare``) so that :mod:`.sandbox` reads as
policy, not plumbing.

The jail is built once per isolated process (an evaluator worker) inside that process's private
mount namespace, so the host never sees its mounts and they vanish with the process:

    <workspace>/jail/          tmpfs, root-owned 0755       becomes "/" of every run (chroot)
        usr/  etc/             read-only bind mounts        the toolchain and dynamic loader
        bin lib lib64 sbin     symlinks (or ro binds)       as on the host
        dev/{null,zero,full,random,urandom}  binds           nothing else of /dev
        pch/                   read-only bind (optional)    the precompiled header
        box/                   tmpfs of ``disk_bytes``      the program's own directory (cwd)
        tmp -> box             so /tmp writes count against the same disk budget
        <staged files>         root-owned 0755              the binary (``../prog``), sources

Not in the jail: ``/proc`` (so no other process's command line), ``/root``, ``/work``, ``/home``,
the data folder, the predictions, the caches, other workers' jails.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

__all__ = ["SandboxError", "probe", "kill_run", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWIPC", "CLONE_NEWPID", "unshare", "prctl",
           "mount", "bind_ro", "build_jail", "procs_of", "PR_SET_CHILD_SUBREAPER",
           "PR_SET_NO_NEW_PRIVS", "PR_SET_PDEATHSIG", "PR_SET_DUMPABLE"]

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x08000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 4, 36, 38
DEVICES = ("null", "zero", "full", "random", "urandom")
TOP_LEVEL = ("usr", "bin", "lib", "lib32", "lib64", "libx32", "sbin")

_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(RuntimeError):
    """The sandbox itself failed (not the program)."""


class NamespaceError(OSError):
    """A namespace or mount syscall failed."""


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise NamespaceError(err, f"{what}: {os.strerror(err)}")


def unshare(flags: int) -> None:
    """``unshare(2)``; raises :class:`NamespaceError`."""
    _check(_libc.unshare(flags), f"unshare({flags:#x})")


def prctl(option: int, arg: int) -> None:
    """``prctl(2)`` with one argument; raises :class:`NamespaceError`."""
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl({option})")


def mount(source: str, target: str | Path, fstype: str | None, flags: int, data: str | None = None) -> None:
    """``mount(2)``; raises :class:`NamespaceError` naming the target."""
    _check(_libc.mount(source.encode(), str(target).encode(), fstype.encode() if fstype else None,
                       flags, data.encode() if data else None), f"mount {source} on {target}")


def bind_ro(src: str | Path, dst: str | Path) -> None:
    """Bind ``src`` on ``dst`` read-only, nosuid (a bind mount ignores MS_RDONLY until remounted)."""
    mount(str(src), dst, None, MS_BIND | MS_REC)
    mount("none", dst, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_REC)


def make_mounts_private() -> None:
    """Stop mount events propagating between this (new) mount namespace and the host."""
    mount("none", "/", None, MS_REC | MS_PRIVATE)


def build_jail(jail: Path, uid: int | None, disk_bytes: int, binds: dict[str, str]) -> Path:
    """Populate ``jail`` (see the module docstring) in the current private mount namespace.

    ``binds`` maps jail-relative names (e.g. ``"pch"``) to host directories shown read-only.
    Returns the program directory ``jail/box`` (a tmpfs of ``disk_bytes``, owned by ``uid``).
    """
    jail.mkdir(parents=True, exist_ok=True)
    mount("tmpfs", jail, "tmpfs", MS_NOSUID, "size=256m,nr_inodes=4096,mode=755")
    for name in TOP_LEVEL:
        host = Path("/") / name
        if host.is_symlink():
            os.symlink(os.readlink(host), jail / name)
        elif host.is_dir():
            (jail / name).mkdir()
            bind_ro(host, jail / name)
    (jail / "etc").mkdir()
    bind_ro("/etc", jail / "etc")
    (jail / "dev").mkdir()
    for d in DEVICES:
        if os.path.exists(f"/dev/{d}"):
            (jail / "dev" / d).touch()
            mount(f"/dev/{d}", jail / "dev" / d, None, MS_BIND)
    for name, host in binds.items():
        (jail / name).mkdir(parents=True)
        bind_ro(host, jail / name)
    box = jail / "box"
    box.mkdir()
    mount("tmpfs", box, "tmpfs", MS_NOSUID | MS_NODEV, f"size={max(disk_bytes, 4096)},nr_inodes=1024,mode=700")
    if uid is not None:
        os.chown(box, uid, uid)
    os.symlink("box", jail / "tmp")
    return box


def procs_of(uid: int | None, sid: int | None) -> list[tuple[int, int, str, int, int]]:
    """(pid, ppid, state, cpu ticks, rss pages) of processes owned by ``uid`` (or in session ``sid``).

    Ownership of ``/proc/<pid>`` is the effective uid; with ``PR_SET_NO_NEW_PRIVS`` a sandboxed
    process cannot change it (setuid bits are ignored), so this finds all of a run's processes.
    """
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
        if uid is None and int(f[3]) != sid:
            continue
        # fields after the comm: state ppid pgrp session ... utime(11) stime(12) ... rss(21)
        out.append((int(ent.name), int(f[1]), f[0], int(f[11]) + int(f[12]), int(f[21])))
    return out


def probe() -> bool:
    """Can a child unshare every namespace we use, mount a tmpfs and chroot? (forked probe)"""
    d = tempfile.mkdtemp(prefix="cft-probe-")
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWPID)
            make_mounts_private()
            mount("tmpfs", d, "tmpfs", 0, "size=64k")
            os.chroot(d)
            ok = True
        except BaseException:
            pass
        os._exit(0 if ok else 1)
    ok = os.waitpid(pid, 0)[1] == 0
    shutil.rmtree(d, ignore_errors=True)  # empty in this (host) view
    return ok


def kill_run(uid: int | None, sid: int, main_pid: int) -> None:
    """SIGKILL every process of the run until none is left alive; reap our zombie children
    (except ``main_pid``, whose status we collect ourselves): we are a child subreaper."""
    me = os.getpid()
    deadline = time.monotonic() + 5.0
    while True:
        alive = 0
        for pid, ppid, state, _, _ in procs_of(uid, None if uid is not None else sid):
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
