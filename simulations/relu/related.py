"""The related fine-tuning methods on the ReLU study, batched: smart, linearized, grouped.

All three start from Π's weights, like standard fine-tuning, and are expressed as hooks of the
batched trainer (``train.Batch``): an extra per-row loss term, a gradient transform applied
before each Adam step, and a callback after each step. ``hooks_for`` builds fresh hooks (their
state: SMART's anchor and noise generator, the linearization point, the neuron groups) for each
training run. The registry entries are all here; docs/related-methods.md §5 gives the settings.

    smart       ||f - y||^2 + lambda_s R_s + mu D(theta, EMA anchor)      predict f
    linearized  ||f_lin - y||^2, f_lin the Taylor model of f around Pi    predict f_lin
    grouped     ||f - y||^2, one shared gradient per group of units       predict f
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional

import numpy as np
import torch

from composedft.grouping import group_mean, group_neurons
from composedft.methods import METHODS, Method, get_method, register_method
from composedft.seeding import derive_seed
from composedft.smart import (SmartConfig, adversarial_perturbation, bregman_term, ema_update, momentum_at,
                              smoothness_term)

from . import models
from .config import ReluConfig
from .methods import ReluObjective, register_objective

__all__ = ["RELATED", "Hooks", "hooks_for", "taylor_forward", "taylor_split", "jacobian_rows",
           "predict", "norm_params", "smart_config"]

RELATED = ("smart", "linearized", "grouped")
Params = Mapping[str, torch.Tensor]


@dataclass
class Hooks:
    """What one method adds to a training run (rows are indices into the stack)."""

    regularizer: Optional[Callable[[dict, torch.Tensor, torch.Tensor], torch.Tensor]] = None
    grad_hook: Optional[Callable[[dict], None]] = None           # edits p[k].grad of the rows
    step_hook: Optional[Callable[[int, int, dict], None]] = None  # (step, steps, p) after opt.step


def _masked_mean(v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (v * mask).sum(1) / mask.sum(1).clamp_min(1)


def smart_config(cfg: ReluConfig) -> SmartConfig:
    """SMART's defaults with the ReLU study's radius (docs/related-methods.md §5): σ = ε/10, η = ε."""
    return SmartConfig(eps=cfg.smart_eps, init_std=cfg.smart_eps / 10, step_size=cfg.smart_eps,
                       lambda_s=cfg.smart_lambda, mu=cfg.smart_mu)


def _row_noise(gens: list[torch.Generator], mask: torch.Tensor) -> torch.Tensor:
    """Standard-normal noise on each row's real points, from the row's own generator.

    Drawing only the row's own points keeps a row's noise (and so its training) independent of
    which other rows, and how much padding, share the stack.
    """
    noise = torch.zeros(mask.shape, dtype=mask.dtype)
    for s, g in enumerate(gens):
        n = int(mask[s].sum())
        noise[s, :n] = torch.randn(n, generator=g, dtype=mask.dtype)
    return noise


def _smart_hooks(cfg: ReluConfig, rows: torch.Tensor, p0: Params, seeds: list[int]) -> Hooks:
    scfg = smart_config(cfg)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    state = {"anchor": models.clone(p0)}

    def regularizer(p: dict, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = models.forward(p, x)
        frozen = {k: v.detach() for k, v in p.items()}
        delta = adversarial_perturbation(lambda xx: models.forward(frozen, xx), x, out, scfg,
                                         example_dims=2, noise=_row_noise(gens, mask))
        r_s = _masked_mean(smoothness_term(lambda xx: models.forward(p, xx), x, out, delta), mask)
        with torch.no_grad():
            out_anchor = models.forward(state["anchor"], x)
        return scfg.lambda_s * r_s + scfg.mu * _masked_mean(bregman_term(out, out_anchor), mask)

    def step_hook(step: int, steps: int, p: dict) -> None:
        state["anchor"] = ema_update(state["anchor"], {k: v.detach()[rows] for k, v in p.items()},
                                     momentum_at(step, steps, scfg))
    return Hooks(regularizer=regularizer, step_hook=step_hook)


def taylor_forward(p: Params, p0: Params, x: torch.Tensor) -> torch.Tensor:
    """f(x; θ0) + J_θ0(x)(θ - θ0) for stacked two-layer ReLU nets, in closed form.

    ∂f/∂a_j = relu(w0_j x + b0_j), ∂f/∂w_j = a0_j 1_j(x) x, ∂f/∂b_j = a0_j 1_j(x), ∂f/∂c = 1 with
    the gate 1_j(x) = 1[w0_j x + b0_j > 0] (torch's relu'(0) = 0).
    """
    pre0 = x.unsqueeze(-1) * p0["w"].unsqueeze(1) + p0["b"].unsqueeze(1)
    h0, gate = torch.relu(pre0), (pre0 > 0).to(x.dtype)
    da, dw, db = (p[k] - p0[k] for k in ("a", "w", "b"))
    lin = (h0 * da.unsqueeze(1)).sum(-1) + (gate * p0["a"].unsqueeze(1) * (x.unsqueeze(-1) * dw.unsqueeze(1)
                                                                           + db.unsqueeze(1))).sum(-1)
    return models.forward(p0, x) + lin + (p["c"] - p0["c"]).unsqueeze(1)


def taylor_split(p: Params, p0: Params) -> tuple[dict, torch.Tensor]:
    """The Taylor model as (ReLU net with θ0's first layer, total step height) (docs/related-methods.md §3).

    f_lin = Σ_j u_j relu(w0_j x + b0_j) + Σ_j a0_j J_j 1_j(x) + c with u_j = a_j + a0_j (w_j/w0_j - 1)
    and J_j = w_j t_j + b_j at θ0's knot t_j = -b0_j/w0_j. Units with w0_j = 0 must have a0_j = 0.

    Returns:
        The continuous part's parameters (a = u, w = w0, b = b0, c) and Σ_j |a0_j J_j| per row.
    """
    w0, b0, a0 = p0["w"], p0["b"], p0["a"]
    live = w0 != 0
    if bool(((~live) & (a0 != 0)).any()):
        raise ValueError("taylor_split: a unit with w0 = 0 and a0 != 0 has no knot (not a ReLU kink)")
    safe_w0 = torch.where(live, w0, torch.ones_like(w0))
    u = torch.where(live, p["a"] + a0 * (p["w"] / safe_w0 - 1.0), p["a"])
    jump = torch.where(live, a0 * (p["w"] * (-b0 / safe_w0) + p["b"]), torch.zeros_like(w0))
    return {"a": u, "w": w0.clone(), "b": b0.clone(), "c": p["c"].clone()}, jump.abs().sum(1)


def _linearized_hooks(p0: Params, y: torch.Tensor) -> Hooks:
    anchor = models.clone(p0)

    def regularizer(p: dict, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return _masked_mean((taylor_forward(p, anchor, x) - y) ** 2, mask)
    return Hooks(regularizer=regularizer)


def _group_labels(cfg: ReluConfig, p0: Params, x: torch.Tensor, mask: torch.Tensor, seeds: list[int]) -> torch.Tensor:
    """[S, m] group of each unit from its activations on the row's labeled inputs (-1: padding unit)."""
    acts = torch.relu(x.unsqueeze(-1) * p0["w"].unsqueeze(1) + p0["b"].unsqueeze(1)).numpy()
    live = ((p0["w"] != 0) | (p0["a"] != 0)).numpy()
    labels = [group_neurons(acts[s][mask[s].numpy() > 0], cfg.n_groups, seeds[s], active=live[s])
              for s in range(len(seeds))]
    return torch.as_tensor(np.array(labels))


def _grouped_hooks(rows: torch.Tensor, labels: torch.Tensor) -> Hooks:
    def grad_hook(p: dict) -> None:
        for k in ("a", "w", "b"):
            p[k].grad[rows] = group_mean(p[k].grad[rows], labels)
    return Hooks(grad_hook=grad_hook)


def hooks_for(objective: str, cfg: ReluConfig, rows: torch.Tensor, p0: Params, x: torch.Tensor, y: torch.Tensor,
              mask: torch.Tensor, seeds: list[int]) -> Optional[Hooks]:
    """Fresh hooks of the objective ``objective`` (a method's, in the core registry) for the stack rows ``rows`` (None for the other methods).

    Args:
        p0: the rows' initial parameters; x, y, mask: the rows' labeled data (real points first);
        seeds: a seed per row (the sweep derives it from the job's seed and setting).
    """
    if objective == "smart":
        return _smart_hooks(cfg, rows, p0, [derive_seed(s, "smart") for s in seeds])
    if objective == "linearized":
        return _linearized_hooks(p0, y)
    if objective == "grouped":
        return _grouped_hooks(rows, _group_labels(cfg, p0, x, mask, [derive_seed(s, "groups") for s in seeds]))
    return None


def predict(objective: str, p: Params, p0: Params, x: torch.Tensor) -> torch.Tensor:
    """The base prediction on x of f trained with ``objective``: f_lin for ``linearized``, else f."""
    return taylor_forward(p, p0, x) if objective == "linearized" else models.forward(p, x)


def norm_params(objective: str, p: Params, p0: Params) -> tuple[dict, np.ndarray]:
    """(network whose norms are reported, total step height); the continuous part for ``linearized``."""
    if objective == "linearized":
        net, jump = taylor_split(p, p0)
        return net, jump.numpy()
    return dict(p), np.zeros(len(p["c"]))


def jacobian_rows(p: Params, x: torch.Tensor) -> torch.Tensor:
    """[S, N, 3m+1] Jacobian of each row's outputs w.r.t. (a, w, b, c), in closed form."""
    pre = x.unsqueeze(-1) * p["w"].unsqueeze(1) + p["b"].unsqueeze(1)
    gate = (pre > 0).to(x.dtype)
    ag = gate * p["a"].unsqueeze(1)
    return torch.cat([torch.relu(pre), ag * x.unsqueeze(-1), ag, torch.ones_like(x).unsqueeze(-1)], -1)


def _register() -> None:
    """The three methods in the core registry, and their objectives in the batched trainer's terms
    (loss weights; the rest of each objective is its hooks, :func:`hooks_for`)."""
    specs = [
        (get_method("smart"), 1.0),  # registered in the core (the code pipeline runs it too)
        (Method("linearized", "denoiser", "linearized", False,
                description="init from Pi; train the first-order Taylor model of f around Pi (eNTK)"), 0.0),
        (Method("grouped", "denoiser", "grouped", False,
                description="init from Pi; units grouped by activation pattern share one gradient"), 1.0),
    ]
    for m, std_weight in specs:
        if m.name not in METHODS:  # importing twice (e.g. reloads in tests) is harmless
            register_method(m)
        register_objective(m.objective, ReluObjective(lambda c, s, w=std_weight: w, lambda c, s: 0.0),
                           overwrite=True)


_register()
