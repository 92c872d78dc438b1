"""Seeding: one call for the global generators, explicit generators for everything that matters.

Global seeding (random, numpy, torch) protects against stray library randomness; data and
initialisation code should still take an explicit ``numpy.random.Generator`` or
``torch.Generator`` so that two components never share (and perturb) one stream.
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything", "np_rng", "torch_generator", "derive_seed"]


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python's ``random``, numpy's legacy global RNG and torch (CPU and CUDA).

    Args:
        seed: the seed.
        deterministic: also ask torch for deterministic kernels. On CUDA this needs
            ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts, which we set here if absent.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)


def np_rng(seed: int) -> np.random.Generator:
    """A fresh numpy Generator (PCG64) for ``seed``."""
    return np.random.default_rng(seed)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch Generator on ``device`` seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def derive_seed(seed: int, *names: object) -> int:
    """A stable sub-seed for a named component (e.g. ``derive_seed(0, "denoiser", 3)``).

    Uses numpy's SeedSequence over the seed and a hash-free encoding of the names, so it is
    stable across processes (unlike ``hash()``, which is salted per process).
    """
    words = [seed & 0xFFFFFFFF]
    for n in names:
        words.extend(ord(ch) for ch in str(n))
        words.append(0x2F)
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint32)[0])
