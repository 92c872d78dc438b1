"""Per-network metrics: norms (via ``theory.norms``) and ID/OOD errors after projection.

Norm conventions (related-methods §6.1, free biases): weight norm (1/2)sum(a^2 + w^2), path norm
sum|a w| (the weight norm minimized over rescalings), and the function-space norm
R(f) = max(int|f''|, |f'(-inf) + f'(+inf)|) of the function the network computes (Savarese
et al. 2019), the smallest weight norm of any network computing f.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from theory import norms as theory_norms

from .task import round_to_valid

__all__ = ["stack_norms", "fn_norms", "prediction_errors"]


def stack_norms(p: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """weight_norm, path_norm and fn_norm (R(f), computed by ``theory``) of every row of a stack."""
    a, w, b = (p[k].detach().numpy() for k in ("a", "w", "b"))
    return {
        "weight_norm": np.array([theory_norms.weight_norm(a[s], w[s]) for s in range(len(a))]),
        "path_norm": np.array([theory_norms.path_norm(a[s], w[s]) for s in range(len(a))]),
        "fn_norm": fn_norms(p),
    }


def fn_norms(p: Mapping[str, torch.Tensor]) -> np.ndarray:
    """R(f) of every row of a stack (``theory.norms``, one vectorized call)."""
    a, w, b = (p[k].detach().numpy() for k in ("a", "w", "b"))
    return np.asarray(theory_norms.fn_norm_of_net(a, w, b), dtype=float).reshape(len(a))


def prediction_errors(pred: np.ndarray, y: np.ndarray, h: float, k: int) -> tuple[float, float]:
    """(squared error, error rate after projection onto the valid outputs {0, h, ..., (k-1)h}).

    The error rate rounds the prediction to the nearest valid output (the oracle denoiser) and
    counts mismatches with the clean target.
    """
    pred, y = np.asarray(pred, float), np.asarray(y, float)
    mse = float(np.mean((pred - y) ** 2))
    err = float(np.mean(round_to_valid(pred, h, k) != round_to_valid(y, h, k)))
    return mse, err
