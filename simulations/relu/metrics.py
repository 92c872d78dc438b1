"""Per-network metrics: norms (via ``theory.norms``) and ID/OOD errors after projection.

Norm conventions (docs/method.md §4.1, free biases): weight norm (1/2)sum(a^2 + w^2), path norm
sum|a w| (the weight norm minimized over rescalings), and the function-space norm
R(f) = max(int|f''|, |f'(-inf) + f'(+inf)|) of the function the network computes (Savarese
et al. 2019), the smallest weight norm of any network computing f.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from composedft.entk import kernel_distance, linearization_gap
from theory import norms as theory_norms

from .task import round_to_valid

__all__ = ["stack_norms", "fn_norms", "prediction_errors", "kernel_regime"]


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


def kernel_regime(p: Mapping[str, torch.Tensor], p0: Mapping[str, torch.Tensor], x: torch.Tensor,
                  mask: torch.Tensor, predictor: Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor],
                  linear: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per row: linearization gap and eNTK kernel distance between θ0 = ``p0`` and θ_t = ``p`` on x.

    gap = ‖f_t - f_0 - J_0(θ_t - θ_0)‖ / ‖f_t - f_0‖ with f_t = ``predictor(p, x)``; distance =
    1 - ⟨K_0, K_t⟩_F / (‖K_0‖ ‖K_t‖) with K = J Jᵀ on the row's real (unmasked) inputs
    (docs/related-methods.md §3). ``linear``: the predictor is the Taylor model itself, whose
    kernel is K_0 at every θ. A row that did not move gets a NaN gap.
    """
    from .related import jacobian_rows, taylor_forward  # late: related registers methods on import

    with torch.no_grad():
        f_t, f_0, f_lin = predictor(p, x), predict_at(p0, x), taylor_forward(p, p0, x)
        j0 = jacobian_rows(p0, x) * mask.unsqueeze(-1)
        j1 = j0 if linear else jacobian_rows(p, x) * mask.unsqueeze(-1)
        k0, k1 = j0 @ j0.transpose(1, 2), j1 @ j1.transpose(1, 2)
    gaps, dists = np.full(len(x), np.nan), np.zeros(len(x))
    for s in range(len(x)):
        keep = mask[s] > 0
        dists[s] = float(kernel_distance(k0[s], k1[s]))
        try:
            gaps[s] = float(linearization_gap(f_t[s][keep], f_0[s][keep], f_lin[s][keep]))
        except ValueError:
            pass  # f did not move: the gap is undefined
    return gaps, dists


def predict_at(p: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """f(x; p) of every row (the stacked two-layer ReLU networks)."""
    from .models import forward
    return forward(p, x)
