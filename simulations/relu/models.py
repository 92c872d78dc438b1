"""S independent univariate two-layer ReLU networks held as stacked weights.

Network s is ``f_s(x) = sum_j a[s,j] * relu(w[s,j] * x + b[s,j]) + c[s]`` (the convention of
``theory.norms``). All S networks run in one computation: inputs are ``[S, N]`` (each row its own
data, padded and masked to a common N), hidden activations ``[S, N, m]``. Networks narrower
than the stack width m carry zero units (``unit_mask``); a zero unit gets zero gradient through
``a`` and a zero weight-decay gradient, so Adam leaves it exactly zero: padding changes nothing.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

__all__ = ["Params", "forward", "init_random", "clone", "select", "stack", "weight_penalty", "to_numpy"]

Params = dict[str, torch.Tensor]  # keys a, w, b: [S, m]; c: [S]

DTYPE = torch.float64


def forward(p: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Evaluate the S networks on their own inputs.

    Args:
        p: stacked parameters (a, w, b of shape [S, m], c of shape [S]).
        x: inputs of shape [S, N].

    Returns:
        Outputs of shape [S, N].
    """
    hidden = torch.relu(x.unsqueeze(-1) * p["w"].unsqueeze(1) + p["b"].unsqueeze(1))  # [S, N, m]
    return torch.einsum("snm,sm->sn", hidden, p["a"]) + p["c"].unsqueeze(1)


def weight_penalty(p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Per-network Savarese cost (1/2) sum_j (a_j^2 + w_j^2), biases free (docs/method.md §4.1)."""
    return 0.5 * (p["a"].pow(2) + p["w"].pow(2)).sum(dim=1)


def init_random(widths: list[int], m: int, lo: np.ndarray, hi: np.ndarray,
                seeds: list[int]) -> Params:
    """Random networks with kinks spread over each row's input range.

    Unit j gets w ~ N(0, 1), a kink t ~ U(lo, hi) (so b = -w t), and a ~ N(0, 1/width); c = 0.
    Spreading the kinks over the data (rather than b ~ N(0, 1)) keeps units alive on 1-D data
    whose range is far from the origin. Each row has its own seed, so a row's initialization
    does not depend on which other rows share the stack.
    """
    S = len(widths)
    out = {k: torch.zeros(S, m, dtype=DTYPE) for k in ("a", "w", "b")}
    out["c"] = torch.zeros(S, dtype=DTYPE)
    for s, (width, seed) in enumerate(zip(widths, seeds)):
        g = torch.Generator().manual_seed(int(seed))
        w = torch.randn(width, generator=g, dtype=DTYPE)
        t = float(lo[s]) + (float(hi[s]) - float(lo[s])) * torch.rand(width, generator=g, dtype=DTYPE)
        a = torch.randn(width, generator=g, dtype=DTYPE) / width ** 0.5
        out["w"][s, :width], out["b"][s, :width], out["a"][s, :width] = w, -w * t, a
    return out


def clone(p: Mapping[str, torch.Tensor]) -> Params:
    return {k: v.detach().clone() for k, v in p.items()}


def select(p: Mapping[str, torch.Tensor], rows: torch.Tensor | list[int]) -> Params:
    """Rows of a stack (a copy)."""
    idx = torch.as_tensor(rows, dtype=torch.long)
    return {k: v.detach()[idx].clone() for k, v in p.items()}


def stack(parts: list[Mapping[str, torch.Tensor]]) -> Params:
    """Concatenate stacks along S (all must share m)."""
    return {k: torch.cat([q[k] for q in parts], dim=0) for k in ("a", "w", "b", "c")}


def to_numpy(p: Mapping[str, torch.Tensor], row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(a, w, b, c) of one network as numpy arrays."""
    return (p["a"][row].detach().numpy().copy(), p["w"][row].detach().numpy().copy(),
            p["b"][row].detach().numpy().copy(), float(p["c"][row]))
