"""g++ with pinned flags, a cached precompiled header and content-addressed caches.

The compiler sees untrusted source (``#include "/root/secret"``, ``asm(".incbin ...")``), so it
runs in the sandbox like the programs (docs/sandbox.md §2): as the sandbox uid, in the jail
(only ``/usr``, ``/etc``, the precompiled header at ``/pch`` and its own ``/box``), with its CPU
time, memory, disk and captured output capped; its temporary files live in ``/box`` and vanish
with the run. A compiler that is stopped by a limit yields ``compile_error`` but is *not*
cached (a loaded machine must not turn a program into a permanent compile error). Only the
precompiled header of the system's ``bits/stdc++.h`` (trusted input) is built outside the jail.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

from . import sandbox

__all__ = ["DEFAULT_FLAGS", "COMPILE_LIMITS", "Compiler", "atomic_write", "default_cache_dir"]

DEFAULT_FLAGS = ("-std=gnu++11", "-O0", "-w", "-pipe")
COMPILE_TIMEOUT_S = 60.0
# CPU seconds of the whole compiler (cc1plus + as + ld), total memory, /box size, messages kept.
COMPILE_LIMITS = sandbox.Limits(time_s=COMPILE_TIMEOUT_S, wall_s=3 * COMPILE_TIMEOUT_S, memory_bytes=4 << 30,
                                output_bytes=64 << 20, disk_bytes=256 << 20, nproc=32, nofile=256,
                                stderr_keep=16000)
# Bump when the way programs are compiled changes: old cache entries (compiled as root outside
# the jail) must not be trusted, their cached messages may hold root-only file contents.
# jail-2: a cached compile message keeps its start (the first error), not only its last 4,000 chars.
CACHE_TAG = "jail-2"


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


@lru_cache(maxsize=None)
def static_link_ok(cxx: str) -> bool:
    """Whether ``cxx`` links a C++ program statically here (``libstdc++.a`` and ``libc.a`` are
    installed). Probed once on a trusted two-line program, outside the sandbox."""
    with tempfile.TemporaryDirectory(prefix="cft-static-") as td:
        try:
            p = subprocess.run([cxx, "-x", "c++", "-static", "-o", os.path.join(td, "a"), "-"], capture_output=True,
                               input=b"#include <iostream>\nint main(){ std::cout << 1; }\n", timeout=120)
        except (OSError, subprocess.SubprocessError):
            return False
        return p.returncode == 0


def _limit_trusted_compiler() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, (int(COMPILE_TIMEOUT_S), int(COMPILE_TIMEOUT_S) + 5))


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _find_stdcxx_header(cxx: str, flags: Sequence[str]) -> str:
    proc = subprocess.run([cxx, *flags, "-x", "c++", "-E", "-H", "-", "-o", os.devnull],
                          input="#include <bits/stdc++.h>\n", capture_output=True, text=True, timeout=60)
    m = re.search(r"^\. (\S*bits/stdc\+\+\.h)$", proc.stderr, re.M)
    if not m:
        raise RuntimeError(f"cannot locate bits/stdc++.h with {cxx}: {proc.stderr[:500]}")
    return m.group(1)


@dataclass
class PchBuild:
    """A precompiled header being built in ``tmp`` by ``proc`` (:meth:`Compiler.start_pch`)."""
    tmp: Path
    proc: subprocess.Popen
    done: bool = False   # finish_pch has run: a second call only returns the directory


@dataclass(frozen=True)
class Compiler:
    """g++ with pinned flags, a cached precompiled header and content-addressed caches."""
    cache_dir: Path
    flags: tuple[str, ...] = DEFAULT_FLAGS
    cxx: str = "g++"
    use_pch: bool = True
    # Link binaries statically where the static libraries exist: a test case then starts without
    # the dynamic loader relocating libstdc++, about 0.8 ms of CPU less per run, and SPoC
    # programs are judged by thousands of short runs (docs/training-speed.md §7).
    static: bool = True

    @property
    def version(self) -> str:
        return _compiler_version(self.cxx)

    @property
    def link_flags(self) -> tuple[str, ...]:
        """Flags added when g++ links a binary: ``-static`` if asked for and possible."""
        return ("-static",) if self.static and static_link_ok(self.cxx) else ()

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps([self.version, self.cxx, list(self.flags), CACHE_TAG]
                                         + list(self.link_flags)).encode()).hexdigest()[:20]

    def _pch_dir(self) -> Path:
        # Not self.key: the header does not depend on how binaries are linked, and leaving the
        # link probe out lets the build start before that probe has run.
        return self.cache_dir / "pch" / hashlib.sha256(json.dumps(
            [self.version, self.cxx, list(self.flags), CACHE_TAG]).encode()).hexdigest()[:20]

    def pch_include_dir(self) -> Path | None:
        """Directory holding ``bits/stdc++.h.gch``, built on first use (None if disabled).

        Built in a temporary directory and renamed into place, so concurrent builders never
        leave a half-written header; an ``OK`` marker records that g++ in the jail uses it.
        Also tells the sandbox to show it read-only as ``/pch`` in every jail.
        """
        return self.finish_pch(self.start_pch())

    def start_pch(self) -> PchBuild | None:
        """Start building the precompiled header in the background if it is missing (None if
        it is built or disabled); :meth:`finish_pch` waits for it. The evaluator compiles its
        first batches meanwhile (docs/training-speed.md §7)."""
        if not self.use_pch or (self._pch_dir() / "OK").exists():
            return None
        final = self._pch_dir()
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=".build-"))
        try:
            header = _find_stdcxx_header(self.cxx, self.flags)
            (tmp / "bits").mkdir()
            proc = subprocess.Popen([self.cxx, *self.flags, "-x", "c++-header", header, "-o",
                                     str(tmp / "bits" / "stdc++.h.gch")], cwd=tmp, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, preexec_fn=_limit_trusted_compiler,
                                    stdin=subprocess.DEVNULL)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return PchBuild(tmp, proc)

    def finish_pch(self, build: PchBuild | None) -> Path | None:
        """Wait for ``build`` (if any, and not finished yet), move it into place, check that g++
        in the jail uses it, and show it as ``/pch`` in every later jail; the directory (None
        if disabled)."""
        if not self.use_pch:
            sandbox.configure({"pch": None})   # an earlier compiler's header may be gone by now
            return None
        final = self._pch_dir()
        if build is not None and not build.done:
            build.done = True
            try:
                _, err = build.proc.communicate()
                if build.proc.returncode != 0:
                    raise RuntimeError(f"building the precompiled header failed: {err[:2000]!r}")
                os.chmod(build.tmp, 0o755)
                try:
                    os.rename(build.tmp, final)
                except OSError:  # another process won the race; use (and check) its copy
                    pass
            finally:
                if build.proc.poll() is None:
                    build.proc.kill()
                    build.proc.wait()
                shutil.rmtree(build.tmp, ignore_errors=True)
        if not (final / "OK").exists():
            self._check_pch(final)
        sandbox.configure({"pch": final})
        return final

    def _check_pch(self, final: Path) -> None:
        sandbox.configure({"pch": final})
        r = sandbox.run([self.cxx, *self.flags, "-Winvalid-pch", "-H", "-fsyntax-only", "-I", self._pch_arg(final),
                         "../probe.cpp"], limits=COMPILE_LIMITS,
                        files={"probe.cpp": b"#include <bits/stdc++.h>\nint main(){return 0;}\n"})
        err = r.stderr.decode("utf-8", "replace")
        if r.status != "ok" or not re.search(r"^! .*stdc\+\+\.h\.gch", err, re.M):
            raise RuntimeError(f"g++ does not use the precompiled header: {r.detail} {err[:2000]}")
        atomic_write(final / "OK", (self.version + "\n" + " ".join(self.flags) + "\n").encode())

    @staticmethod
    def _pch_arg(host_dir: Path) -> str:
        return "/pch" if sandbox.capabilities()["namespaces"] else str(host_dir)

    def run(self, source: str, extra: Sequence[str], collect: Sequence[str] = (),
            limits: sandbox.Limits | None = None) -> tuple[sandbox.RunResult, str]:
        """Run the compiler on ``source`` (staged as ``../prog.cpp``) in the sandbox; (result,
        message with paths as g++ saw them). ``limits``: :data:`COMPILE_LIMITS` (looked up per call)
        unless a caller needs more of the captured messages back (the batch compiler)."""
        argv = [self.cxx, *self.flags]
        inc = self.pch_include_dir()
        if inc is not None:
            argv += ["-I", self._pch_arg(inc)]
        link = self.link_flags if "-o" in extra else ()
        r = sandbox.run(argv + list(extra) + list(link) + ["../prog.cpp"], limits=limits or COMPILE_LIMITS, collect=collect,
                        files={"prog.cpp": source.encode("utf-8", "surrogateescape")})
        msg = (r.stdout + r.stderr).decode("utf-8", "replace").replace("../prog.cpp", "prog.cpp")
        return r, msg

    def binary_path(self, source: str) -> Path:
        """Where :meth:`compile` caches the binary of ``source`` (``.err``: its message)."""
        h = hashlib.sha256((self.key + "\0" + source).encode("utf-8", "surrogateescape")).hexdigest()
        return self.cache_dir / "bin" / h[:2] / h

    @staticmethod
    def cacheable(r: sandbox.RunResult) -> bool:
        """A real compiler verdict (exit status 1..124), not a limit or the sandbox failing."""
        return not r.timed_out and not r.memory_limited and not r.output_limited \
            and r.returncode is not None and 0 < r.returncode < 125

    def compile(self, source: str) -> tuple[Path | None, str]:
        """(binary path, "") or (None, compiler message); compiler verdicts are cached by hash."""
        binp = self.binary_path(source)
        errp = binp.with_suffix(".err")
        if binp.exists():
            return binp, ""
        if errp.exists():
            return None, errp.read_text(errors="replace")
        r, msg = self.run(source, ["-o", "prog"], collect=("prog",))
        if r.status == "ok" and "prog" in r.files:
            atomic_write(binp, r.files["prog"], 0o755)
            return binp, ""
        if r.status != "ok" and not self.cacheable(r):
            return None, f"compiler stopped: {r.detail}" + (f"\n{msg[-3000:]}" if msg else "")
        # Keep the first error (what went wrong; the evaluator's detail shows the start) and the
        # end of a long message (template errors run to pages of notes).
        msg = (msg if len(msg) <= 4000 else msg[:2000] + "\n[...]\n" + msg[-2000:]) or f"g++ exit status {r.returncode}"
        atomic_write(errp, msg.encode())
        return None, msg

    def syntax_ok(self, source: str) -> bool:
        """Does ``source`` pass ``g++ -fsyntax-only`` (with the precompiled header)? Cached."""
        h = hashlib.sha256((self.key + "\0syntax\0" + source).encode("utf-8", "surrogateescape")).hexdigest()
        p = self.cache_dir / "syntax" / h[:2] / h
        if p.exists():
            return p.read_bytes() == b"1"
        r, _ = self.run(source, ["-fsyntax-only"])
        if r.status == "ok" or self.cacheable(r):
            atomic_write(p, b"1" if r.status == "ok" else b"0")
        return r.status == "ok"
