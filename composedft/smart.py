"""SMART: smoothness-inducing adversarial regularization with a momentum Bregman proximal anchor.

Jiang et al. (ACL 2020), restated in docs/related-methods.md §1. Fine-tuning minimizes

    L(θ) + λ_s R_s(θ) + μ D(θ, θ̃),
    R_s(θ) = mean_i max_{‖δ_i‖_∞ ≤ ε} ℓ_s(f(x_i + δ_i; θ), f(x_i; θ)),
    D(θ, θ̃) = mean_i ℓ_s(f(x_i; θ), f(x_i; θ̃)),   θ̃ ← β θ̃ + (1 - β) θ after every step,

with ℓ_s the symmetric KL (classification) or the squared difference (regression). The inner max
is approximated by ascent steps from a small random start (at δ = 0 the gradient of ℓ_s vanishes,
so the random start is essential, docs/related-methods.md §1.3). Every function here works on any
callable ``fn(x) -> outputs``; nothing is tied to a model class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Mapping, Optional

import torch

__all__ = ["SmartConfig", "sym_kl", "squared_divergence", "adversarial_perturbation", "smoothness_term",
           "bregman_term", "ema_update", "momentum_at"]

Divergence = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SmartConfig:
    """The paper's defaults (docs/related-methods.md §1.1): ε = σ = 1e-5, η = 1e-3, μ = 1, one ascent
    step, λ_s ∈ {1, 3, 5}, β = 0.99 for the first 10% of the updates and 0.999 afterwards."""

    eps: float = 1e-5              # ℓ∞ radius of the input perturbation
    init_std: float = 1e-5         # std of the random start of the perturbation
    step_size: float = 1e-3        # ascent step η
    num_steps: int = 1             # ascent steps T_x̃
    lambda_s: float = 1.0          # weight of the smoothness term
    mu: float = 1.0                # weight of the Bregman proximal term
    beta: float = 0.99             # EMA momentum of the anchor early on
    beta_late: float = 0.999       # ... and after ``warm_frac`` of the steps
    warm_frac: float = 0.1
    mode: Literal["paper", "mtdnn"] = "paper"


def sym_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) + KL(q‖p) of the softmax distributions along the last dim (one value per example)."""
    lp, lq = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
    return ((lp.exp() - lq.exp()) * (lp - lq)).sum(-1)


def squared_divergence(out_p: torch.Tensor, out_q: torch.Tensor) -> torch.Tensor:
    """(p - q)^2, elementwise: the regression divergence of §1.1 (scalar outputs per example)."""
    return (out_p - out_q) ** 2


def _inf_norm(t: torch.Tensor, example_dims: int) -> torch.Tensor:
    """ℓ∞ norm over the non-example dims, broadcastable to ``t`` (|t| if every dim is an example)."""
    if t.dim() == example_dims:
        return t.abs()
    flat = t.abs().flatten(example_dims).amax(-1)
    return flat.view(*flat.shape, *([1] * (t.dim() - example_dims)))


def adversarial_perturbation(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                             out_clean: torch.Tensor, cfg: SmartConfig = SmartConfig(), *,
                             divergence: Divergence = squared_divergence, example_dims: Optional[int] = None,
                             generator: Optional[torch.Generator] = None,
                             noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The perturbation δ of each example (docs/related-methods.md §1.3, §1.5), detached.

    ``paper``: δ ← clip_ε(δ + η g/‖g‖_∞) (normalized ascent, then projection on the ε-box).
    ``mtdnn``: δ ← (δ + η g)/‖δ + η g‖_∞ (the official code: a unit ℓ∞ direction, no projection).
    g is the gradient of Σ ℓ_s(fn(x + δ), out_clean) with respect to δ, with the model's
    parameters and ``out_clean`` held fixed.

    Args:
        example_dims: how many leading dims of ``x`` index examples (default: all but the last;
            for inputs that are one scalar per example pass ``x.dim()``).
        noise: the standard-normal start (shape of ``x``) instead of drawing it from ``generator``.
    """
    if cfg.mode not in ("paper", "mtdnn"):
        raise ValueError(f"SMART mode must be 'paper' or 'mtdnn', got {cfg.mode!r}")
    ed = x.dim() - 1 if example_dims is None else example_dims
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    delta = cfg.init_std * noise
    target = out_clean.detach()
    for _ in range(cfg.num_steps):
        delta = delta.detach().requires_grad_(True)
        with torch.enable_grad():  # also when the caller evaluates the objective under no_grad
            loss = divergence(fn(x.detach() + delta), target).sum()
            (g,) = torch.autograd.grad(loss, delta)
        if cfg.mode == "paper":
            delta = (delta + cfg.step_size * g / (_inf_norm(g, ed) + 1e-300)).clamp(-cfg.eps, cfg.eps)
        else:
            moved = delta + cfg.step_size * g
            delta = moved / (_inf_norm(moved, ed) + 1e-300)
    return delta.detach()


def smoothness_term(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, out_clean: torch.Tensor,
                    delta: torch.Tensor, divergence: Divergence = squared_divergence) -> torch.Tensor:
    """ℓ_s(fn(x + δ), fn(x)) per example; gradients reach the parameters through both sides."""
    return divergence(fn(x + delta), out_clean)


def bregman_term(out: torch.Tensor, out_anchor: torch.Tensor,
                 divergence: Divergence = squared_divergence) -> torch.Tensor:
    """ℓ_s(f(x; θ), f(x; θ̃)) per example, the anchor's outputs held fixed (§1.2)."""
    return divergence(out, out_anchor.detach())


def ema_update(anchor: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor],
               beta: float) -> dict[str, torch.Tensor]:
    """θ̃ ← β θ̃ + (1 - β) θ as new tensors (never aliases ``params``, the pitfall of §1.5)."""
    if set(anchor) != set(params):
        raise ValueError(f"anchor keys {sorted(anchor)} != parameter keys {sorted(params)}")
    return {k: beta * anchor[k].detach() + (1.0 - beta) * params[k].detach() for k in anchor}


def momentum_at(step: int, total: int, cfg: SmartConfig = SmartConfig()) -> float:
    """β for update ``step`` of ``total``: ``cfg.beta`` for the first ``warm_frac`` of them, then ``beta_late``."""
    return cfg.beta if step < cfg.warm_frac * total else cfg.beta_late
