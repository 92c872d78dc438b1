"""Limits of one sandboxed run and its result (docs/sandbox.md §3)."""
from __future__ import annotations

import math
import resource
import signal
from dataclasses import dataclass, field

__all__ = ["Limits", "RunResult", "rlimits"]


@dataclass(frozen=True)
class Limits:
    """Limits of one run (docs/sandbox.md §3). ``cpu_s``: per-process ``RLIMIT_CPU``, default
    ``ceil(time_s) + 1``; ``wall_s``: backstop, default ``10 * time_s + 5``."""
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
        """The wall-clock backstop: generous, so that only sleeping programs meet it (a correct
        program near its CPU limit on a 2-core machine running 10 other jobs stays under it)."""
        return self.wall_s if self.wall_s is not None else 10 * self.time_s + 5


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


def rlimits(limits: Limits) -> list[tuple[int, tuple[int, int]]]:
    """The per-process rlimits of a run: CPU (soft ``cpu_s``, hard +1 s), address space, file
    size, processes, open files, no core dumps."""
    cpu = limits.cpu_s if limits.cpu_s is not None else int(math.ceil(limits.time_s)) + 1
    return [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
            (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
            (resource.RLIMIT_FSIZE, (limits.output_bytes, limits.output_bytes)),
            (resource.RLIMIT_NPROC, (limits.nproc, limits.nproc)),
            (resource.RLIMIT_NOFILE, (limits.nofile, limits.nofile)),
            (resource.RLIMIT_CORE, (0, 0))]
