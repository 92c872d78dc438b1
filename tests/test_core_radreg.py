"""Empirical Rademacher complexity of linear heads (docs/related-methods.md §2.4, §2.6).

Orthonormal features: ‖Σσ_j h_j‖ = sqrt(m) for every σ, so R̂ = B/sqrt(m) exactly (Monte Carlo
included). Random features: exact enumeration <= the Jensen bound; the Monte-Carlo estimate
agrees with enumeration within its standard error; the closed-form sup over heads is attained by
v = B s/‖s‖ and never beaten by random heads in the ball.
"""
from __future__ import annotations

import math

import pytest
import torch

from _tolerances import TOL
from composedft.radreg import (jensen_bound, rademacher_linear, rademacher_linear_exact, rademacher_signs,
                               radreg_penalty)

D = torch.float64


def test_orthonormal_features_give_b_over_sqrt_m():
    m, B = 6, 2.5
    q, _ = torch.linalg.qr(torch.randn(9, m, dtype=D, generator=torch.Generator().manual_seed(0)))
    feats = q.T  # m orthonormal rows in R^9
    exact = rademacher_linear_exact(feats, B)
    mc = rademacher_linear(feats, rademacher_signs(50, m, torch.Generator().manual_seed(1)), B)
    for v in (exact, mc, jensen_bound(feats, B)):
        torch.testing.assert_close(v, torch.tensor(B / math.sqrt(m), dtype=D), **TOL["same_float64"])


def test_exact_below_jensen_and_mc_within_standard_error():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(8, 3, dtype=D, generator=g) * torch.tensor([1.0, 3.0, 0.2], dtype=D)
    exact = rademacher_linear_exact(feats)
    assert exact < jensen_bound(feats)
    signs = rademacher_signs(4000, 8, g)
    per = torch.linalg.norm(signs @ feats, dim=1) / 8
    se = per.std() / math.sqrt(len(per))
    assert abs(rademacher_linear(feats, signs) - exact) <= TOL["mc_z"] * se


def test_single_feature_and_sup_attained_by_normalized_sum():
    h = torch.tensor([[3.0, 4.0]], dtype=D)
    torch.testing.assert_close(rademacher_linear_exact(h, 2.0), torch.tensor(10.0, dtype=D))
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(5, 4, dtype=D, generator=g)
    sigma = rademacher_signs(1, 5, g)[0]
    s = sigma @ feats
    best = (s / torch.linalg.norm(s)) @ s  # v* = s/‖s‖ (B = 1)
    heads = torch.randn(2000, 4, dtype=D, generator=g)
    heads = heads / torch.linalg.norm(heads, dim=1, keepdim=True).clamp_min(1.0)  # inside the unit ball
    assert (heads @ s).max() <= best
    torch.testing.assert_close(best, torch.linalg.norm(s), **TOL["same_float64"])


def test_penalty_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(4)
    feats = torch.randn(4, 2, dtype=D, generator=g).requires_grad_(True)
    signs = rademacher_signs(7, 4, g)
    radreg_penalty(feats, 0.3, signs).backward()
    h = 1e-6
    fd = torch.zeros_like(feats)
    for i in range(4):
        for j in range(2):
            e = torch.zeros_like(feats)
            e[i, j] = h
            fd[i, j] = (radreg_penalty(feats.detach() + e, 0.3, signs) - radreg_penalty(feats.detach() - e, 0.3, signs)) / (2 * h)
    torch.testing.assert_close(feats.grad, fd, **TOL["fd_float64"])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="features"):
        rademacher_linear(torch.zeros(3), torch.ones(1, 3))
    with pytest.raises(ValueError, match="signs"):
        rademacher_linear(torch.zeros(3, 2), torch.ones(1, 4))
    with pytest.raises(ValueError, match="weight"):
        radreg_penalty(torch.ones(3, 2), -1.0, torch.ones(1, 3))
