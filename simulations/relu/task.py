"""The 1-D staircase task: valid outputs are multiples of h on k disjoint intervals.

Plateau i (i = 0..k-1) has height ``i*h`` on ``[i*(L+delta), i*(L+delta) + L]`` (docs/method.md §4.3,
docs/experiments.md §2.1). Labeled points come from the first ``k_train = k - k_ood`` intervals; the
ID test draws fresh points from the same intervals, the OOD test from the intervals beyond them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Staircase", "TaskData", "make_task_data", "round_to_valid", "sample_intervals"]


@dataclass(frozen=True)
class Staircase:
    """Geometry of the staircase target.

    Attributes:
        k: number of intervals / plateaus.
        k_train: labeled (in-distribution) intervals, the first ``k_train`` ones.
        delta: gap between consecutive intervals.
        L: interval length.
        h: spacing of valid outputs.
    """

    k: int
    k_train: int
    delta: float
    L: float = 1.0
    h: float = 1.0

    @property
    def pitch(self) -> float:
        return self.L + self.delta

    def interval(self, i: int) -> tuple[float, float]:
        """Endpoints of interval i."""
        lo = i * self.pitch
        return lo, lo + self.L

    def target(self, x: np.ndarray) -> np.ndarray:
        """Staircase value of the nearest interval (defined everywhere for plotting).

        On the intervals this is the target ``i*h``; in a gap it is the value of the interval
        whose rounding cell of the linear map contains x (the midpoint rule).
        """
        i = np.clip(np.floor((np.asarray(x) - self.L / 2) / self.pitch + 0.5), 0, self.k - 1)
        return i * self.h

    def linear_map(self, x: np.ndarray) -> np.ndarray:
        """The line h*(x - L/2)/(L+delta) through the interval centres (Figure 1, right)."""
        return self.h * (np.asarray(x) - self.L / 2) / self.pitch

    @property
    def valid_outputs(self) -> np.ndarray:
        return np.arange(self.k) * self.h


def sample_intervals(stair: Staircase, intervals: range, n: int, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray]:
    """n points uniform on the union of the given (equal-length) intervals, with their targets."""
    idx = rng.integers(intervals.start, intervals.stop, size=n)
    x = idx * stair.pitch + rng.uniform(0.0, stair.L, size=n)
    return x, idx * stair.h


def round_to_valid(y: np.ndarray | float, h: float, k: int | None = None) -> np.ndarray:
    """Oracle denoiser: projection onto the valid outputs (nearest multiple of h, clipped to range).

    Ties (odd multiples of h/2) go to the even multiple (numpy's round-half-to-even).
    """
    q = np.round(np.asarray(y, dtype=float) / h)
    if k is not None:
        q = np.clip(q, 0, k - 1)
    return q * h


@dataclass(frozen=True)
class TaskData:
    """One draw of the task: labeled set, ID test and OOD test (numpy float64 arrays)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_id: np.ndarray
    y_id: np.ndarray
    x_ood: np.ndarray
    y_ood: np.ndarray


def make_task_data(stair: Staircase, n_train: int, n_test: int, label_noise: float,
                   rng: np.random.Generator) -> TaskData:
    """Draw the labeled set (optionally noisy labels), the ID test and the OOD test."""
    ktr = range(0, stair.k_train)
    x, y = sample_intervals(stair, ktr, n_train, rng)
    if label_noise > 0:
        y = y + label_noise * rng.standard_normal(n_train)
    x_id, y_id = sample_intervals(stair, ktr, n_test, rng)
    x_ood, y_ood = sample_intervals(stair, range(stair.k_train, stair.k), n_test, rng)
    return TaskData(x, y, x_id, y_id, x_ood, y_ood)
