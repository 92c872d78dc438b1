"""Batched training of S two-layer ReLU networks in one computation.

Every network has its own data (rows of ``x``/``y``, padded and masked), its own loss weights and
its own frozen denoiser, so one stack can hold several methods, settings and seeds. The stacked
objective is the *sum* of the per-network objectives; networks share no parameters, so each one
receives exactly its own gradient, and Adam (element-wise) then updates each one exactly as if it
were trained alone.

Per-network objective (docs/method.md §2, continuous outputs; docs/method.md §4.1):

    std_w * mean_i (f(x_i) - y_i)^2  +  comp_w * mean_i (Pi(f(x_i)) - y_i)^2
        + weight_decay * (1/2) sum_j (a_j^2 + w_j^2)  [+ method regularizer]

The composed term is differentiated through the frozen Pi (pathwise gradient).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from composedft.radreg import rademacher_signs, radreg_penalty

from . import models

__all__ = ["Batch", "objective", "train_stack", "denoiser_data", "knot_grid_fit", "train_denoisers"]


@dataclass
class Batch:
    """Inputs of a stack: padded data and per-row loss weights.

    Attributes:
        x, y, mask: [S, N]; mask is 1 on real points, 0 on padding.
        std_w, comp_w: [S] weights of the standard and composed terms.
        denoiser: stacked frozen denoiser parameters for every row ([S, m]; ignored where comp_w=0).
        regularizers: (row indices, fn(params_of_rows, x_rows, mask_rows) -> [len(rows)]) pairs.
        grad_hooks: fn(params) called after backward and before each Adam step (may edit .grad).
        step_hooks: fn(step, steps, params) called after each Adam step (e.g. an EMA anchor).
    """

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor
    std_w: torch.Tensor
    comp_w: torch.Tensor
    denoiser: Optional[dict] = None
    regularizers: Sequence[tuple[torch.Tensor, Callable]] = ()
    grad_hooks: Sequence[Callable[[dict], None]] = ()
    step_hooks: Sequence[Callable[[int, int, dict], None]] = ()


def _masked_mean(err2: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (err2 * mask).sum(1) / mask.sum(1).clamp_min(1)


def objective(p: dict, batch: Batch, weight_decay: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row (data loss, total objective), each of shape [S]; weight decay scalar or [S]."""
    pred = models.forward(p, batch.x)
    data = batch.std_w * _masked_mean((pred - batch.y) ** 2, batch.mask)
    comp_rows = torch.nonzero(batch.comp_w > 0).flatten()
    if len(comp_rows):
        den = {k: v[comp_rows] for k, v in batch.denoiser.items()}
        out = models.forward(den, pred[comp_rows])  # Pi(f(x)), Pi frozen (no grad on den)
        comp = _masked_mean((out - batch.y[comp_rows]) ** 2, batch.mask[comp_rows])
        data = data.index_add(0, comp_rows, batch.comp_w[comp_rows] * comp)
    total = data + weight_decay * models.weight_penalty(p)
    for rows, fn in batch.regularizers:
        sub = {k: v[rows] for k, v in p.items()}
        total = total.index_add(0, rows, fn(sub, batch.x[rows], batch.mask[rows]))
    return data, total


# (step, parameters at that step, each row's regularized objective) -> None
Recorder = Callable[[int, dict, np.ndarray], None]


def train_stack(p: dict, batch: Batch, *, steps: int, lr: float, weight_decay: float | torch.Tensor,
                record_every: int = 0, on_record: Optional[Recorder] = None
                ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Full-batch Adam on the stacked objective.

    Args:
        p: initial stacked parameters (copied, not modified).
        batch: the rows' data and loss weights.
        steps: Adam steps.
        lr: learning rate.
        weight_decay: coefficient of the Savarese cost (1/2)sum(a^2 + w^2) (L2 in the loss,
            so stationary points are those of the regularized objective); a scalar or one per row.
        record_every, on_record: if both are set, ``on_record(step, params, objective)`` is called
            before step 0, every ``record_every`` steps and after the last step (the training
            trajectory; recording reads the parameters and changes nothing).

    Returns:
        Trained parameters, each row's final data loss (objective without weight decay) and
        each row's final regularized objective.
    """
    p = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    opt = torch.optim.Adam(list(p.values()), lr=lr)
    # cosine decay: large early steps move the denoiser-initialized kinks, small late steps settle
    # on the weight-decayed (near min-norm) solution instead of oscillating around it
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    record = on_record is not None and record_every > 0
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        _, total = objective(p, batch, weight_decay)
        if record and step % record_every == 0:  # the objective at the parameters of this step
            on_record(step, {k: v.detach() for k, v in p.items()}, total.detach().numpy().copy())
        total.sum().backward()
        with torch.no_grad():
            for hook in batch.grad_hooks:
                hook(p)
        opt.step()
        for hook in batch.step_hooks:
            hook(step, steps, p)
        sched.step()
    with torch.no_grad():
        data, total = objective(p, batch, weight_decay)
    final = {k: v.detach() for k, v in p.items()}
    if record:
        on_record(steps, final, total.numpy().copy())
    return final, data.numpy().copy(), total.numpy().copy()


def denoiser_data(k: int, h: float, sigma: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n unlabeled valid outputs (uniform over 0, h, ..., (k-1)h) and their Gaussian corruptions."""
    rng = np.random.default_rng(seed)
    clean = rng.integers(0, k, size=n) * h
    return clean + sigma * rng.standard_normal(n), clean


def knot_grid_fit(noisy: torch.Tensor, clean: torch.Tensor, widths: Sequence[int], m: int,
                  lo: np.ndarray, hi: np.ndarray, ridge: float = 1e-8) -> dict:
    """Least-squares start for the denoisers: first layer fixed to a knot grid, output layer solved.

    Row s gets ``widths[s]`` right-facing units relu(x - t_j) with knots t_j evenly spaced on
    ``[lo_s, hi_s]``; (a, c) minimise the mean squared denoising error plus ``ridge * |a|^2``
    (a linear least-squares problem, solved for all rows at once). The units are then rescaled to
    balanced form |a_j| = |w_j| (same function, minimal weight norm, docs/method.md §4.1).
    Gradient descent from a random start stays near the identity map for thousands of steps
    (spectral bias); this convex start gives the flat plateaus a denoiser needs.
    """
    S, n = noisy.shape
    w = torch.zeros(S, m, dtype=noisy.dtype)
    t = torch.zeros(S, m, dtype=noisy.dtype)
    for s, width in enumerate(widths):
        w[s, :width] = 1.0
        t[s, :width] = torch.linspace(float(lo[s]), float(hi[s]), width + 2, dtype=noisy.dtype)[1:-1]
    feats = torch.relu(noisy.unsqueeze(-1) * w.unsqueeze(1) - (w * t).unsqueeze(1))  # [S, n, m]
    design = torch.cat([feats, torch.ones(S, n, 1, dtype=noisy.dtype)], dim=2)
    gram = design.transpose(1, 2) @ design / n
    reg = torch.diag_embed(torch.cat([(w > 0).to(noisy.dtype) * ridge, torch.zeros(S, 1, dtype=noisy.dtype)], 1))
    pad = torch.diag_embed(torch.cat([(w == 0).to(noisy.dtype), torch.zeros(S, 1, dtype=noisy.dtype)], 1))
    rhs = design.transpose(1, 2) @ clean.unsqueeze(-1) / n
    coef = torch.linalg.solve(gram + reg + pad, rhs).squeeze(-1)  # padded units: coefficient 0
    a, c = coef[:, :m], coef[:, m]
    scale = torch.sqrt(a.abs().clamp_min(1e-300))  # balance: (a, w, b) -> (a/s, s w, s b)
    scale = torch.where(w > 0, scale, torch.zeros_like(scale))
    return {"a": torch.sign(a) * scale, "w": w * scale, "b": -w * t * scale, "c": c}


def train_denoisers(p: dict, noisy: torch.Tensor, clean: torch.Tensor, *, steps: int, batch: int,
                    lr: float, seed: int, radreg: Optional[tuple[torch.Tensor, float, int]] = None) -> dict:
    """Pre-train S denoisers Pi: corrupted valid output -> clean valid output (MSE, Adam).

    Every row has its own fixed pre-training set (``noisy``/``clean`` of shape [S, n]); all rows
    use the same minibatch positions each step, drawn from ``seed`` and the step only, so a
    denoiser does not depend on which others share the stack.

    ``radreg = (inputs [S, n_u], weight, draws)`` adds RadReg's penalty weight * R̂ of each row's
    hidden layer relu(w z + b) on its unlabeled downstream inputs (linear heads, B = 1, ``draws``
    fresh sign vectors per step, the same for every row; docs/related-methods.md §2).
    """
    p = {k: v.detach().clone().requires_grad_(True) for k, v in p.items()}
    opt = torch.optim.Adam(list(p.values()), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    g = torch.Generator().manual_seed(int(seed))
    n = noisy.shape[1]
    sign_gen = torch.Generator().manual_seed(int(seed) + 1)  # its own stream: the batches stay as without RadReg
    for _ in range(steps):
        idx = torch.randint(0, n, (min(batch, n),), generator=g)
        opt.zero_grad(set_to_none=True)
        out = models.forward(p, noisy[:, idx])
        loss = ((out - clean[:, idx]) ** 2).mean(1).sum()
        if radreg is not None:
            inputs, weight, draws = radreg
            signs = rademacher_signs(draws, inputs.shape[1], sign_gen)
            feats = torch.relu(inputs.unsqueeze(-1) * p["w"].unsqueeze(1) + p["b"].unsqueeze(1))  # [S, n_u, m]
            loss = loss + sum(radreg_penalty(feats[s], weight, signs) for s in range(len(feats)))
        loss.backward()
        opt.step()
        sched.step()
    return {k: v.detach() for k, v in p.items()}
