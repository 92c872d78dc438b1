"""Trained wide two-layer ReLU networks (torch, float64) as the third, independent estimate.

Objective (full batch, seeded, Adam with a cosine learning-rate decay):

    loss(f) + (lam / 2) * (||a||^2 + ||W||^2),      biases b and c unregularized,

so at a stationary point the weight norm equals the path norm and approaches the minimal R of
the constraint set as lam -> 0 (docs/method.md §4.1). Losses:

* ``"mse"``       mean (f(x) - y)^2                                  (standard: fit the staircase)
* ``"band"``      mean relu(|f(x) - y| - beta)^2                     (composed with rounding:
  f must land in the rounding cell shrunk by a margin, beta = h/2 - margin; the hinge is the
  differentiable surrogate of "round(f) = y")
* ``"denoised"``  mean relu(|Pi_T(f(x)) - y| - eps)^2                (composed with the smooth
  denoiser Pi_T of :func:`theory.staircase.smooth_denoiser`; gradients flow through Pi_T)

Outputs may be vectors (y of shape [n, d]): the hidden layer is shared and a_j is a d-vector; the
weight norm is then 0.5 sum(||a_j||^2 + w_j^2) and the path norm sum ||a_j||_2 |w_j|.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


__all__ = ["FitConfig", "FitProblem", "FitResult", "fit_relu_nets"]


@dataclass(frozen=True)
class FitConfig:
    """Training hyper-parameters shared by a batch of fits (the problem carries its own loss)."""

    width: int = 128
    steps: int = 6000
    lr: float = 2e-2
    seed: int = 0
    init_scale: float = 1e-2  # small output layer: the "rich" regime that finds low-norm fits


@dataclass(frozen=True)
class FitProblem:
    """One fit: data, loss ("mse" | "band" | "denoised"), band half-width / eps, weight decay."""

    x: np.ndarray  # [n]
    y: np.ndarray  # [n] or [n, d]
    loss: str = "mse"
    beta: float = 0.0  # band half-width for "band", eps for "denoised"
    lam: float = 1e-4
    h: float = 1.0  # lattice spacing of the smooth denoiser
    T: int = 2  # iterations of the smooth denoiser


@dataclass(frozen=True)
class FitResult:
    a: np.ndarray  # [m] or [m, d]
    w: np.ndarray
    b: np.ndarray
    c: np.ndarray | float
    weight_norm: float
    path_norm: float
    max_violation: float  # largest residual of the constraint the loss encodes (0 = satisfied)


_KINDS = ("mse", "band", "denoised")


def _residual(out, y, kind, beta, h, T):
    """Per-entry residual of each loss kind; kind/beta/h/T are [B, 1, 1] tensors."""
    r_mse = out - y
    r_band = torch.relu((out - y).abs() - beta)
    den = out
    for t in range(int(T.max())):  # smooth denoiser, applied T_b times per problem
        den = torch.where(T > t, den - h / (2 * math.pi) * torch.sin(2 * math.pi * den / h), den)
    r_den = torch.relu((den - y).abs() - beta)
    return torch.where(kind == 0, r_mse, torch.where(kind == 1, r_band, r_den))


def fit_relu_nets(problems: list[FitProblem], cfg: FitConfig) -> list[FitResult]:
    """Train the batch single-threaded (tiny tensors: threads only add overhead); see _fit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(problems, cfg)
    finally:
        torch.set_num_threads(threads)


def _fit(problems: list[FitProblem], cfg: FitConfig) -> list[FitResult]:
    """Train one width-m net per problem, all in one batched float64 torch loop.

    Problems are padded to a common n and d with zero-weight entries, so each fit is exactly the
    one it would be alone (up to the shared seed stream). Initialization: knots -b_j/w_j uniform
    over the data range, |w_j| = 1 with random sign, a_j ~ init_scale * N(0, 1), c = mean(y).
    """
    for p in problems:
        if p.loss not in _KINDS:
            raise ValueError(f"FitProblem.loss must be one of {_KINDS}, got {p.loss!r}")
    B, m = len(problems), cfg.width
    ys = [np.asarray(p.y, np.float64).reshape(len(p.x), -1) for p in problems]
    n = max(len(p.x) for p in problems)
    d = max(y.shape[1] for y in ys)
    X = torch.zeros(B, n, dtype=torch.float64)
    Y = torch.zeros(B, n, d, dtype=torch.float64)
    M = torch.zeros(B, n, d, dtype=torch.float64)
    for i, (p, y) in enumerate(zip(problems, ys)):
        X[i, :len(p.x)] = torch.as_tensor(np.asarray(p.x, np.float64))
        Y[i, :len(p.x), :y.shape[1]] = torch.as_tensor(y)
        M[i, :len(p.x), :y.shape[1]] = 1.0 / len(p.x)
    col = lambda v: torch.tensor(v, dtype=torch.float64).view(B, 1, 1)  # noqa: E731
    kind = col([_KINDS.index(p.loss) for p in problems])
    beta, h, T = col([p.beta for p in problems]), col([p.h for p in problems]), col([p.T for p in problems])
    lam = torch.tensor([p.lam for p in problems], dtype=torch.float64)
    g = torch.Generator().manual_seed(cfg.seed)
    lo = torch.tensor([float(np.min(p.x)) for p in problems], dtype=torch.float64)[:, None]
    hi = torch.tensor([float(np.max(p.x)) for p in problems], dtype=torch.float64)[:, None]
    knots = lo - 0.1 * (hi - lo) + 1.2 * (hi - lo) * torch.rand(B, m, generator=g, dtype=torch.float64)
    w = torch.where(torch.rand(B, m, generator=g, dtype=torch.float64) < 0.5, -1.0, 1.0).double()
    b = -w * knots
    a = cfg.init_scale * torch.randn(B, m, d, generator=g, dtype=torch.float64)
    c = (Y * M).sum(1, keepdim=True) / M.sum(1, keepdim=True).clamp_min(1e-300)
    params = [p.requires_grad_(True) for p in (a, w, b, c)]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)) + 1e-3)

    def forward():
        return torch.relu(X[:, :, None] * w[:, None, :] + b[:, None, :]) @ a + c

    for _ in range(cfg.steps):
        opt.zero_grad(set_to_none=True)
        r = _residual(forward(), Y, kind, beta, h, T)
        fit = (r.pow(2) * M).sum((1, 2))
        reg = 0.5 * lam * (a.pow(2).sum((1, 2)) + w.pow(2).sum(1))
        (fit + reg).sum().backward()  # problems are independent: the sum decouples them
        opt.step()
        sched.step()
    out: list[FitResult] = []
    with torch.no_grad():
        viol = (_residual(forward(), Y, kind, beta, h, T).abs() * (M > 0)).amax((1, 2))
        for i, (p, y) in enumerate(zip(problems, ys)):
            ai = a[i, :, :y.shape[1]].numpy().copy()
            wi, bi = w[i].numpy().copy(), b[i].numpy().copy()
            ci = c[i, 0, :y.shape[1]].numpy().copy()
            an = np.linalg.norm(ai, axis=1)
            vec = np.asarray(p.y).ndim == 2
            out.append(FitResult(
                a=ai if vec else ai[:, 0], w=wi, b=bi, c=ci if vec else float(ci[0]),
                weight_norm=float(0.5 * (np.sum(an ** 2) + np.sum(wi ** 2))),
                path_norm=float(np.sum(an * np.abs(wi))), max_violation=float(viol[i])))
    return out
