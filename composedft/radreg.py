"""Empirical Rademacher complexity of linear heads on a representation, and RadReg's penalty.

Deng et al. (AISTATS 2024), restated in docs/related-methods.md §2. For linear heads
{z ↦ vᵀz : ‖v‖_2 ≤ B} on features h_1..h_m (rows of ``features``), the supremum has a closed form:

    R̂ = E_σ sup_v (1/m) Σ_j σ_j vᵀh_j = (B/m) E_σ ‖Σ_j σ_j h_j‖_2,

estimated by Monte Carlo over sign vectors (exact by enumeration for small m). Jensen gives
R̂ ≤ (B/m) sqrt(Σ_j ‖h_j‖²), with equality for orthonormal features, where R̂ = B/sqrt(m).
RadReg adds λ R̂ of the representation on unlabeled downstream inputs to the pre-training loss.
"""
from __future__ import annotations

import itertools
from typing import Optional

import torch

__all__ = ["rademacher_signs", "rademacher_linear", "rademacher_linear_exact", "jensen_bound", "radreg_penalty"]


def rademacher_signs(n_draws: int, m: int, generator: Optional[torch.Generator] = None,
                     dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """[n_draws, m] i.i.d. uniform ±1 signs."""
    return (torch.randint(0, 2, (n_draws, m), generator=generator) * 2 - 1).to(dtype)


def _check(features: torch.Tensor) -> None:
    if features.dim() != 2 or features.shape[0] < 1:
        raise ValueError(f"features must be [m >= 1, d], got shape {tuple(features.shape)}")


def rademacher_linear(features: torch.Tensor, signs: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """(B/m) mean over the rows σ of ``signs`` of ‖σᵀH‖_2 (differentiable in ``features``)."""
    _check(features)
    m = features.shape[0]
    if signs.dim() != 2 or signs.shape[1] != m:
        raise ValueError(f"signs must be [draws, {m}], got {tuple(signs.shape)}")
    sums = signs.to(features.dtype) @ features  # [draws, d]: Σ_j σ_j h_j
    # sqrt of a clamped square: the gradient stays finite where a signed sum vanishes
    return bound / m * torch.sqrt((sums ** 2).sum(-1).clamp_min(1e-300)).mean()


def rademacher_linear_exact(features: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """The same expectation by enumerating all 2^m sign vectors (m <= 20)."""
    _check(features)
    m = features.shape[0]
    if m > 20:
        raise ValueError(f"exact enumeration needs m <= 20, got {m}")
    signs = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=m)), dtype=features.dtype)
    return rademacher_linear(features, signs, bound)


def jensen_bound(features: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """(B/m) sqrt(Σ_j ‖h_j‖²) >= R̂ (E‖s‖ <= sqrt(E‖s‖²), cross terms of E‖s‖² vanish)."""
    _check(features)
    return bound / features.shape[0] * torch.sqrt((features ** 2).sum())


def radreg_penalty(features: torch.Tensor, weight: float, signs: torch.Tensor, bound: float = 1.0) -> torch.Tensor:
    """RadReg's pre-training term λ R̂ (linear heads, Monte-Carlo signs; §2.4)."""
    if weight < 0:
        raise ValueError(f"RadReg weight must be >= 0, got {weight}")
    return weight * rademacher_linear(features, signs, bound)
