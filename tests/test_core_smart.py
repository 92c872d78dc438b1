"""SMART pieces against closed forms (docs/related-methods.md §1).

Linear model f(x) = wᵀx with the squared divergence: the ℓ∞ worst case is (ε‖w‖_1)^2 at
δ = ±ε sign(w); one paper-mode step from a small random start lands exactly there; at δ = 0 the
gradient vanishes. Bregman: D(θ, θ) = 0; the EMA anchor after m steps equals
β^m θ̃_0 + (1-β) Σ_j β^(m-1-j) θ_j.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from _tolerances import TOL
from composedft.smart import (SmartConfig, adversarial_perturbation, bregman_term, ema_update, momentum_at,
                              smoothness_term, squared_divergence, sym_kl)

D = torch.float64
W = torch.tensor([0.7, -1.3, 0.2, 2.1], dtype=D)
X = torch.tensor([[0.5, 1.0, -2.0, 0.3], [1.5, -0.4, 0.0, 2.0]], dtype=D)
EPS = 0.01


def linear(x: torch.Tensor) -> torch.Tensor:
    return x @ W


def test_sym_kl_zero_symmetric_and_bernoulli_closed_form():
    lp = torch.tensor([[0.3, -1.2], [2.0, 0.1]], dtype=D)
    lq = torch.tensor([[-0.5, 0.4], [0.0, 0.0]], dtype=D)
    assert torch.equal(sym_kl(lp, lp), torch.zeros(2, dtype=D))
    torch.testing.assert_close(sym_kl(lp, lq), sym_kl(lq, lp), **TOL["same_float64"])
    p, q = torch.softmax(lp, -1)[:, 0], torch.softmax(lq, -1)[:, 0]
    closed = (p - q) * torch.log(p * (1 - q) / (q * (1 - p)))
    torch.testing.assert_close(sym_kl(lp, lq), closed, **TOL["same_float64"])


def test_linear_worst_case_is_eps_l1_squared_by_enumerating_box_corners():
    # the max of a convex function over the box is at a corner: enumerate all 2^4 corners
    corners = torch.tensor(list(itertools.product((-EPS, EPS), repeat=4)), dtype=D)
    worst = ((corners @ W) ** 2).max()
    torch.testing.assert_close(worst, (EPS * W.abs().sum()) ** 2, **TOL["same_float64"])


def test_one_paper_step_reaches_the_worst_corner():
    cfg = SmartConfig(eps=EPS, init_std=1e-6, step_size=1.0, num_steps=1, mode="paper")
    out = linear(X)
    delta = adversarial_perturbation(linear, X, out, cfg, generator=torch.Generator().manual_seed(0))
    sign = torch.sign((delta * W).sum(1, keepdim=True))  # ± per example
    assert torch.equal(delta, sign * EPS * torch.sign(W))
    term = smoothness_term(linear, X, out, delta)
    torch.testing.assert_close(term, torch.full((2,), float((EPS * W.abs().sum()) ** 2), dtype=D),
                               **TOL["same_float64"])


def test_zero_start_never_moves():
    cfg = SmartConfig(eps=EPS, init_std=0.0, step_size=1.0, num_steps=3)
    delta = adversarial_perturbation(linear, X, linear(X), cfg)
    assert torch.equal(delta, torch.zeros_like(X))


def test_mtdnn_step_is_the_normalized_noise_plus_step_gradient():
    cfg = SmartConfig(init_std=1e-3, step_size=0.5, mode="mtdnn")
    delta = adversarial_perturbation(linear, X, linear(X), cfg, generator=torch.Generator().manual_seed(1))
    d0 = 1e-3 * torch.randn(X.shape, dtype=D, generator=torch.Generator().manual_seed(1))  # same start
    moved = d0 + 0.5 * 2 * (d0 @ W).unsqueeze(1) * W  # grad of (wᵀδ)^2 is 2 (wᵀδ) w
    torch.testing.assert_close(delta, moved / moved.abs().amax(1, keepdim=True), **TOL["reordered_float64"])
    torch.testing.assert_close(delta.abs().amax(1), torch.ones(2, dtype=D), **TOL["reordered_float64"])


def test_scalar_inputs_per_example_use_abs_as_norm():
    # 1-D piecewise-linear f: the worst case at each point is eps^2 * slope^2 (slope on the chosen side)
    f = lambda x: torch.relu(x) * 3.0 - torch.relu(x - 1.0) * 5.0  # noqa: E731  slopes 0, 3, -2
    x = torch.tensor([-0.5, 0.5, 2.0], dtype=D)
    cfg = SmartConfig(eps=EPS, init_std=1e-7, step_size=1.0)
    delta = adversarial_perturbation(f, x, f(x), cfg, example_dims=1, generator=torch.Generator().manual_seed(2))
    term = smoothness_term(f, x, f(x), delta)
    torch.testing.assert_close(term, EPS ** 2 * torch.tensor([0.0, 9.0, 4.0], dtype=D), **TOL["same_float64"])


def test_bad_mode_is_refused():
    with pytest.raises(ValueError, match="mode"):
        adversarial_perturbation(linear, X, linear(X), SmartConfig(mode="l2"))  # type: ignore[arg-type]


def test_bregman_zero_at_anchor_and_squared_otherwise():
    out = linear(X)
    assert torch.equal(bregman_term(out, out), torch.zeros(2, dtype=D))
    torch.testing.assert_close(bregman_term(out, out + 0.5), torch.full((2,), 0.25, dtype=D))


def test_ema_recursion_matches_closed_form_and_does_not_alias():
    beta = 0.9
    thetas = [{"w": torch.tensor([float(j), -2.0 * j], dtype=D)} for j in range(1, 6)]
    anchor0 = {"w": torch.tensor([3.0, 1.0], dtype=D)}
    anchor = anchor0
    for th in thetas:
        anchor = ema_update(anchor, th, beta)
    m = len(thetas)
    closed = beta ** m * anchor0["w"] + (1 - beta) * sum(beta ** (m - 1 - j) * thetas[j]["w"] for j in range(m))
    torch.testing.assert_close(anchor["w"], closed, **TOL["same_float64"])
    one = ema_update(anchor0, thetas[0], 0.99)
    torch.testing.assert_close(one["w"], 0.01 * thetas[0]["w"] + 0.99 * anchor0["w"], **TOL["same_float64"])
    thetas[0]["w"].add_(100.0)  # changing the parameters afterwards must not change the anchor
    torch.testing.assert_close(one["w"], 0.01 * (thetas[0]["w"] - 100.0) + 0.99 * anchor0["w"])
    with pytest.raises(ValueError, match="keys"):
        ema_update(anchor0, {"v": torch.zeros(2)}, beta)


def test_momentum_schedule_switches_after_ten_percent():
    cfg = SmartConfig()
    assert [momentum_at(s, 100, cfg) for s in (0, 9, 10, 99)] == [0.99, 0.99, 0.999, 0.999]
    assert (cfg.eps, cfg.init_std, cfg.step_size, cfg.mu) == (1e-5, 1e-5, 1e-3, 1.0)


def test_squared_divergence_elementwise():
    assert torch.equal(squared_divergence(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 2.0])), torch.tensor([4.0, 0.0]))
