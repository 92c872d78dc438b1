"""The sandbox's per-process workspace: staged files, the program directory, captured I/O.

One workspace per process (evaluator worker), reused across runs: creating and removing a
directory (or a jail) per run cost more than the run itself. See docs/sandbox.md §2.

* jailed (namespaces available): the program directory is the jail's ``/box`` tmpfs (its size is
  the run's disk budget) and staged files sit at the jail's root (``../prog`` from ``/box``);
* fallback: ``<root>/w<pid>/cwd`` (owned by the sandbox uid, 0700) with staged files beside it.

stdin/stdout/stderr are unlinked temporary files: the program cannot reach them by path.
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from . import sandbox_ns as ns

__all__ = ["Workspace", "sandbox_root"]

_root_dir: Path | None = None
_root_pid = 0            # the process that created the root removes it
keep_root = False        # set in an isolated process: its view holds jail mounts, never rmtree them


def sandbox_root() -> Path:
    """This evaluation's ``/tmp/cft-sbx-*`` directory (shared by forked workers, removed at exit)."""
    global _root_dir, _root_pid
    if _root_dir is None or not _root_dir.is_dir():
        _root_dir, _root_pid = Path(tempfile.mkdtemp(prefix="cft-sbx-")), os.getpid()
        os.chmod(_root_dir, 0o711)  # traversable, not listable, by the sandbox uid (fallback)
        atexit.register(remove_root)
    return _root_dir


def remove_root() -> None:
    """Remove the sandbox root: only from the process that created it, and only if that process
    is not isolated (in its own mount namespace the jails are mounted: rmtree would descend into
    the read-only binds of /usr). Seen from the host, jails are empty directories."""
    if _root_dir is not None and _root_pid == os.getpid() and not keep_root and _root_dir.is_dir():
        shutil.rmtree(_root_dir, ignore_errors=True)


class Workspace:
    """Staged files, the program directory and the captured I/O of one process's runs."""

    def __init__(self, uid: int | None, jailed: bool, binds: dict[str, str] | None = None):
        self.pid, self.uid, self.jailed = os.getpid(), uid, jailed
        self.dir = sandbox_root() / f"w{self.pid}"
        self.dir.mkdir(exist_ok=True)
        os.chmod(self.dir, 0o755)
        self.disk = 64 << 20
        if jailed:
            self.jail = self.dir / "jail"
            self.cwd = ns.build_jail(self.jail, uid, self.disk, binds or {})
            self.stage_dir, self.home = self.jail, "/box"
        else:
            self.cwd = self.dir / "cwd"
            self.cwd.mkdir(exist_ok=True)
            if uid is not None:
                os.chown(self.cwd, uid, uid)
            self.stage_dir, self.home = self.dir, str(self.cwd)
        os.chmod(self.cwd, 0o700)
        self.files = [tempfile.TemporaryFile(dir=sandbox_root()) for _ in range(3)]
        self.staged: dict[str, tuple] = {}

    def stage(self, name: str, src: str | os.PathLike | bytes) -> None:
        """Make ``src`` (a host path, or bytes) available read-only as ``../<name>``."""
        if isinstance(src, bytes):
            key: tuple = ("bytes", hashlib.sha256(src).hexdigest())
        else:
            st = os.stat(src)
            key = (str(src), st.st_ino, st.st_size, st.st_mtime_ns)
        if self.staged.get(name) == key:
            return
        dst = self.stage_dir / name
        if isinstance(src, bytes):
            dst.write_bytes(src)
        else:
            shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)
        self.staged[name] = key

    def set_disk(self, n: int) -> None:
        """Resize the jail's ``/box`` tmpfs to the run's disk budget (no-op without a jail)."""
        if self.jailed and n != self.disk:
            ns.mount("tmpfs", self.cwd, None, ns.MS_REMOUNT | ns.MS_NOSUID | ns.MS_NODEV, f"size={max(n, 4096)}")
            self.disk = n

    def reset_io(self, stdin: bytes):
        """Empty the three I/O files, write ``stdin``; returns (stdin, stdout, stderr) files."""
        for f in self.files:
            f.seek(0)
            f.truncate()
        fin = self.files[0]
        fin.write(stdin)
        fin.flush()
        fin.seek(0)
        return self.files

    def collect(self, name: str, cap: int) -> bytes | None:
        """The bytes of regular file ``<cwd>/<name>`` (never a symlink; at most ``cap``), or None."""
        try:
            fd = os.open(self.cwd / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return None
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > cap:
                return None
            return fh.read(cap)

    def disk_used(self) -> int:
        """Bytes of files under the program directory (the fallback's disk check)."""
        total = 0
        for dirpath, _, names in os.walk(self.cwd):
            for n in names:
                try:
                    total += os.lstat(os.path.join(dirpath, n)).st_size
                except OSError:
                    pass
        return total

    def clean(self) -> None:
        """Empty the program directory (symlinks are removed, never followed)."""
        for ent in os.scandir(self.cwd):
            if ent.is_dir(follow_symlinks=False):
                shutil.rmtree(ent.path, ignore_errors=True)
            else:
                os.unlink(ent.path)
        os.chmod(self.cwd, 0o700)
