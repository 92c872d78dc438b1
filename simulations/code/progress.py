"""Progress of a long evaluation on stderr: a tqdm bar on a terminal, periodic lines otherwise.

Shows programs done, programs/s, the ETA and the pass rate so far (issue 11 item 4). Disabled
(no output at all) unless ``enabled``; the CLI enables it for ``evaluate`` and ``check-gold``.
"""
from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Count finished items and passes; report on stderr (bar if a tty, else a line every
    ``every_s`` seconds and one at the end)."""

    def __init__(self, total: int, unit: str, enabled: bool = True, every_s: float = 30.0, stream=None):
        self.total, self.unit, self.enabled, self.every_s = total, unit, enabled, every_s
        self.stream = stream or sys.stderr
        self.done = self.passed = 0
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if enabled and self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit=unit[:-1] if unit.endswith("s") else unit,
                            file=self.stream, dynamic_ncols=True)

    def line(self) -> str:
        """``done/total unit, rate/s, pass rate, ETA`` (the plain-text report)."""
        el = max(time.monotonic() - self.t0, 1e-9)
        rate = self.done / el
        eta = (self.total - self.done) / rate if rate > 0 else float("nan")
        return (f"{self.done}/{self.total} {self.unit}, {rate:.2f}/s, pass rate "
                f"{100 * self.passed / max(self.done, 1):.1f}%, ETA {eta:.0f}s")

    def update(self, passed: bool) -> None:
        self.done += 1
        self.passed += bool(passed)
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"pass {100 * self.passed / self.done:.1f}%", refresh=False)
            self.bar.update(1)
        elif time.monotonic() - self.last >= self.every_s:
            self.last = time.monotonic()
            print(self.line(), file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.enabled and exc[0] is None and self.total:
            print(self.line(), file=self.stream, flush=True)
