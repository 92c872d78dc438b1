"""Progress of the loops a user waits on: a tqdm bar on a terminal, periodic plain lines otherwise.

Why two modes (docs/training-speed.md §4): a bar redraws itself with ``\\r``, which is right on a
terminal and wrong in a log file or a CI job, where it would leave thousands of fragments or,
with tqdm's own non-terminal default, nothing at all for an hour. So when the stream is not a
terminal a :class:`Progress` writes one plain line every ``every_s`` seconds (count, percent,
rate, ETA and the latest postfix values) and a closing line if it wrote any; loops shorter than
``every_s`` stay silent. Reporting never touches an RNG or a tensor: it cannot change results.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

__all__ = ["Progress", "format_duration"]

DEFAULT_EVERY_S = 30.0  # plain-line period when the stream is not a terminal


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (or ``M:SS`` under an hour) of a non-negative duration; ``?`` if unknown."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        return "?"
    s = int(round(seconds))
    h, m, s = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class Progress:
    """Count work done towards ``total``; show it as a bar, as periodic lines, or not at all.

    Args:
        total: units of work in all (steps, sequences, programs).
        desc: what is counted, first on every bar / line (e.g. the training stage's name).
        unit: the unit's name (``step``, ``seq``, ``prog``).
        enabled: True: always a tqdm bar; False: nothing; None: a bar when ``stream`` is a
            terminal, else periodic plain lines.
        initial: work already done before this call (a resumed run), excluded from the rate.
        every_s: seconds between plain lines (default: the module's ``DEFAULT_EVERY_S``).
        stream: where to write (default: ``sys.stderr`` at construction).
        clock: monotonic seconds (injectable for tests).
    """

    def __init__(self, total: int, desc: str, *, unit: str = "it", enabled: bool | None = None, initial: int = 0,
                 every_s: float | None = None, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.n, self.initial = total, desc, unit, initial, initial
        self.stream = sys.stderr if stream is None else stream
        self.every_s, self.clock = DEFAULT_EVERY_S if every_s is None else every_s, clock
        self.postfix: dict[str, str] = {}
        self.mode = "off" if enabled is False else "bar" if enabled or _is_terminal(self.stream) else "lines"
        self._bar = None
        self._t0 = self._last = clock()
        self._lines, self._closed, self._written_n = 0, False, None
        if self.mode == "bar":
            from tqdm.auto import tqdm  # imported here: keeps `import composedft` light
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             dynamic_ncols=True, leave=False)

    @property
    def disabled(self) -> bool:
        return self.mode == "off"

    def update(self, n: int = 1) -> None:
        """``n`` more units done (also usable as a ``progress(n)`` callback)."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "lines" and self.clock() - self._last >= self.every_s:
            self._write_line()

    def set_postfix(self, **values: float | str) -> None:
        """Values shown after the counts (floats to 4 significant digits), kept until replaced."""
        self.postfix.update({k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in values.items()})
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=False)

    def line(self) -> str:
        """The plain line: ``desc: n/total unit (p%) r unit/s ETA t k=v ...``."""
        elapsed = self.clock() - self._t0
        done = self.n - self.initial
        rate = done / elapsed if elapsed > 0 else float("nan")
        eta = (self.total - self.n) / rate if rate > 0 else float("nan")
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        post = "".join(f" {k}={v}" for k, v in self.postfix.items())
        return (f"{self.desc}: {self.n}/{self.total} {self.unit}{pct} {rate:.3g} {self.unit}/s "
                f"elapsed {format_duration(elapsed)} ETA {format_duration(eta)}{post}")

    def _write_line(self) -> None:
        self._last, self._written_n = self.clock(), self.n
        self._lines += 1
        print(self.line(), file=self.stream, flush=True)

    def close(self) -> None:
        """Remove the bar; in line mode write a final line if any was written before and the count
        moved since the last one (no duplicate when the last update wrote a line). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "lines" and self._lines and self.n != self._written_n:
            self._write_line()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
