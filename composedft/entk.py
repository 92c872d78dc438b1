"""The empirical NTK of any model, kernel regression, kernel distance and the linearization gap.

Malladi et al. (ICML 2023), restated in docs/related-methods.md §3. For a model
``fn(params, x) -> outputs [n]`` (``params`` a dict of tensors), the eNTK at θ is
K(x, x') = ⟨∇_θ f(x; θ), ∇_θ f(x'; θ)⟩ = J Jᵀ. Fine-tuning is "in the kernel regime" when the
first-order Taylor model f_0 + J_0(θ - θ_0) tracks the trained model (small linearization gap)
and the kernel barely moves (small kernel distance between the eNTK at θ_0 and at the end).
"""
from __future__ import annotations

from typing import Callable, Mapping, Optional

import torch
from torch.func import jacrev, jvp

__all__ = ["jacobian", "entk", "kernel_regression", "kernel_distance", "linearize", "linearization_gap"]

Model = Callable[[Mapping[str, torch.Tensor], torch.Tensor], torch.Tensor]


def jacobian(fn: Model, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """[n_outputs, n_params] Jacobian of the flattened outputs, parameters in sorted-key order."""
    p = {k: v.detach() for k, v in params.items()}
    jac = jacrev(lambda q: fn(q, x).reshape(-1))(p)
    return torch.cat([jac[k].reshape(jac[k].shape[0], -1) for k in sorted(p)], dim=1)


def entk(fn: Model, params: Mapping[str, torch.Tensor], x1: torch.Tensor,
         x2: Optional[torch.Tensor] = None) -> torch.Tensor:
    """eNTK J(x1) J(x2)ᵀ over the flattened outputs ([n1, n2] for one output per input)."""
    j1 = jacobian(fn, params, x1)
    j2 = j1 if x2 is None else jacobian(fn, params, x2)
    return j1 @ j2.T


def kernel_regression(k_train: torch.Tensor, y_train: torch.Tensor, k_test: torch.Tensor, ridge: float = 0.0,
                      f0_train: Optional[torch.Tensor] = None, f0_test: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Predictions K_test (K + ridge I)^+ (y - f0_train) + f0_test (``adjust_for_init`` of §3.2).

    ``ridge = 0`` uses the pseudo-inverse: the minimum-norm least-squares solution (and the
    long-time limit of gradient flow from θ_0 on the squared loss).
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    target = y_train - (f0_train if f0_train is not None else 0.0)
    n = k_train.shape[0]
    mat = k_train + ridge * torch.eye(n, dtype=k_train.dtype)
    alpha = torch.linalg.pinv(mat, hermitian=True) @ target if ridge == 0 else torch.linalg.solve(mat, target)
    return k_test @ alpha + (f0_test if f0_test is not None else 0.0)


def kernel_distance(k0: torch.Tensor, k1: torch.Tensor) -> torch.Tensor:
    """1 - ⟨K0, K1⟩_F / (‖K0‖_F ‖K1‖_F): 0 iff K1 = c K0 with c > 0 (§3.3)."""
    num = (k0 * k1).sum()
    den = torch.linalg.norm(k0) * torch.linalg.norm(k1)
    if den == 0:
        raise ValueError("kernel_distance of a zero kernel is undefined")
    return 1.0 - num / den


def linearize(fn: Model, params0: Mapping[str, torch.Tensor]) -> Model:
    """The first-order Taylor model θ ↦ f(x; θ_0) + J_0(x)(θ - θ_0) (a forward-mode JVP)."""
    p0 = {k: v.detach() for k, v in params0.items()}

    def model(params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        tangent = {k: params[k] - p0[k] for k in p0}
        out0, dout = jvp(lambda q: fn(q, x), (p0,), (tangent,))
        return out0 + dout
    return model


def linearization_gap(f_t: torch.Tensor, f_0: torch.Tensor, f_lin: torch.Tensor) -> torch.Tensor:
    """‖f_t - f_lin‖ / ‖f_t - f_0‖ with f_lin = f_0 + J_0(θ_t - θ_0) (all evaluated on the same inputs)."""
    den = torch.linalg.norm(f_t - f_0)
    if den == 0:
        raise ValueError("linearization gap undefined: the model did not move (f_t == f_0)")
    return torch.linalg.norm(f_t - f_lin) / den
