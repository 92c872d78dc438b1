"""The experiment's stages: data, denoiser pre-training, fine-tuning each method, evaluation.

See docs/fonts.md §3-§4. One run folder per seed::

    DIR/config.json, manifest.json   resolved config; versions, commit, wall time, skipped fonts
    DIR/denoiser/                    Π's training state (last.pt, eval.csv)
    DIR/direct/, DIR/composed/       f's training state (last.pt, best.pt, eval.csv)
    DIR/results.csv                  method, split, mse, seed, f_norm, best_step, n
    DIR/samples.npz                  held-out test pairs: targets and each method's outputs

Every training stage goes through :func:`composedft.train.train` with a run folder, so a killed
run started again with the same ``--out`` resumes each stage from its last checkpoint, and a
finished stage is not trained again.
"""
from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn

from composedft import methods
from composedft.compose import Composed, freeze
from composedft.io import atomic_write_bytes, atomic_write_csv
from composedft.objectives import standard_mse
from composedft.seeding import derive_seed
from composedft.train import TrainConfig, train

from .config import CHARS, FontsConfig
from .data import FontData, Split, gaussian_blur, make_split, to_unit
from .models import Generator, UNet, f_norm, l2_penalty

__all__ = ["METHOD_NAMES", "MethodSpec", "method_spec", "Tensors", "make_tensors", "pretrain_denoiser",
           "make_generator", "finetune_method", "evaluate", "RESULT_FIELDS"]

METHOD_NAMES = ("direct", "direct+posthoc", "composed", "composed-base")
RESULT_FIELDS = ("method", "split", "mse", "seed", "f_norm", "best_step", "n")

Loss = Callable[[nn.Module, Any, Any, Any, float], torch.Tensor]


@dataclass(frozen=True)
class MethodSpec:
    """One result row's method: how f is trained (or whose f it reuses) and how it predicts.

    Attributes:
        name: the name in results.csv.
        reuse: the method whose trained f this one evaluates (None: trains its own).
        loss: ``(f, Π, x, y, λ) -> loss`` of the trained methods (None when reusing).
        predict: ``(f, Π, x) -> image``: f(x) or Π(f(x)), in eval mode, no gradients.
        through_denoiser: the prediction (and the model selection) is Π(f(x)).
    """

    name: str
    reuse: str | None
    loss: Loss | None
    predict: Callable[[nn.Module, nn.Module | None, torch.Tensor], torch.Tensor]
    through_denoiser: bool


def method_spec(name: str) -> MethodSpec:
    """The one place that reads the core method registry (:mod:`composedft.methods`).

    The four methods are the registry's own: ``direct`` (mse(f(x), y), predicts f(x)),
    ``direct+posthoc`` (direct's f, predicts Π(f(x))), ``composed`` (the registry's composed loss,
    pathwise through the frozen Π; predicts Π(f(x))) and ``composed-base`` (composed's f alone).
    f always starts at random here: the generator and the U-Net have different shapes, so the
    registry's "f <- Π's weights" cannot apply. docs/fonts.md §3.
    """
    if name not in METHOD_NAMES:
        raise ValueError(f"unknown method {name!r} (choose from {', '.join(METHOD_NAMES)})")
    m = methods.get_method(name)
    return MethodSpec(name=name, reuse=m.reuse, loss=methods.OBJECTIVES[m.objective] if m.trains else None,
                      predict=functools.partial(methods.predict, name), through_denoiser=m.predict_with_denoiser)


@dataclass(frozen=True)
class Tensors:
    """The split's data as tensors: generator inputs (font position, char) and [-1, 1] targets."""

    x: dict[str, torch.Tensor]          # split -> int64 [n, 2]
    y: dict[str, torch.Tensor]          # split -> float32 [n, 1, 32, 32]
    denoiser_pool: torch.Tensor         # clean images Π learns from: unlabeled fonts + labeled train
    n_labeled: int


def make_tensors(fonts: FontData, split: Split) -> Tensors:
    """Targets of each split, and Π's pool (every glyph of the unlabeled fonts plus the labeled train images)."""
    x, y = {}, {}
    for name in ("train", "val", "test"):
        pairs = getattr(split, name)
        x[name] = torch.as_tensor(pairs, dtype=torch.long)
        y[name] = to_unit(fonts.images[split.labeled[pairs[:, 0]], pairs[:, 1]])
    pool = torch.cat([to_unit(fonts.images[split.unlabeled].reshape(-1, 32, 32)), y["train"]])
    return Tensors(x, y, pool, len(split.labeled))


def _train_config(cfg: FontsConfig, *, steps: int, lr: float, batch: int, select: bool, betas) -> TrainConfig:
    return TrainConfig(lr=lr, steps=steps, batch_size=batch, betas=betas, seed=cfg.seed, device=cfg.device,
                       eval_every=cfg.eval_every if select else 0, ckpt_every=cfg.ckpt_every,
                       select_metric="val_mse" if select else "", progress=False)


def pretrain_denoiser(cfg: FontsConfig, data: Tensors, run_dir: Path) -> tuple[UNet, dict[str, float]]:
    """Pre-train Π to un-blur glyphs (blur radius ~ U(0, blur_max)), MSE, Adam β = (0.5, 0.999).

    Returns Π (frozen) and its denoising MSE on the labeled val images blurred with a fixed seed,
    beside the MSE of the blurred input itself (how much Π removes).
    """
    torch.manual_seed(derive_seed(cfg.seed, "init", "denoiser"))
    unet = UNet(cfg.unet_width, cfg.unet_dropout)
    pool = data.denoiser_pool

    def batch_fn(step: int, g: torch.Generator):
        idx = torch.randint(len(pool), (cfg.denoiser_batch,), generator=g)
        sigma = torch.rand(cfg.denoiser_batch, generator=g) * cfg.blur_max
        return gaussian_blur(pool[idx], sigma, cfg.blur_max), pool[idx]

    tc = _train_config(cfg, steps=cfg.denoiser_steps, lr=cfg.denoiser_lr, batch=cfg.denoiser_batch,
                       select=False, betas=(0.5, 0.999))
    train(unet, lambda m, b: standard_mse(m(b[0]), b[1]), batch_fn, tc, run_dir=run_dir)
    freeze(unet.cpu())
    g = torch.Generator().manual_seed(derive_seed(cfg.seed, "denoiser-eval"))
    clean = data.y["val"]
    blurred = gaussian_blur(clean, torch.rand(len(clean), generator=g) * cfg.blur_max, cfg.blur_max)
    with torch.no_grad():
        stats = {"blurred_val_mse": float(standard_mse(blurred, clean)),
                 "denoised_val_mse": float(standard_mse(unet(blurred), clean)),
                 "identity_val_mse": float(standard_mse(unet(clean), clean))}
    return unet, stats


def make_generator(cfg: FontsConfig, n_labeled: int, name: str) -> Generator:
    """A freshly initialized generator f (seeded per method and seed)."""
    torch.manual_seed(derive_seed(cfg.seed, "init", name))
    return Generator(n_labeled, len(CHARS), cfg.font_emb, cfg.char_emb, cfg.gen_widths, cfg.bn_eps)


def training_loss(spec: MethodSpec, l2: float, lam: float) -> Callable[[nn.Module, Any], torch.Tensor]:
    """``loss_fn(model, (x, y))`` for :func:`composedft.train.train`: the registry's loss + l2·Σ‖W‖².

    ``model`` is f for direct and :class:`composedft.compose.Composed` (f, Π) for composed; the
    penalty covers f's non-bias weights only (the paper's composed objective, docs/fonts.md §3).
    """
    if spec.loss is None:
        raise ValueError(f"method '{spec.name}' trains nothing")

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        f, pi = (model.base_predictor, model.denoiser) if isinstance(model, Composed) else (model, None)
        loss = spec.loss(f, pi, x, y, lam)
        return loss + l2 * l2_penalty(f) if l2 else loss

    return loss_fn


def finetune_method(cfg: FontsConfig, name: str, data: Tensors, denoiser: UNet, run_dir: Path
                    ) -> tuple[Generator, int | None]:
    """Train f for ``name`` (``direct`` or ``composed``), selected on val MSE of its prediction.

    Composed trains ``Composed(f, Π)``: Π frozen (no grad, eval mode), the gradient reaching f
    through Π (pathwise). Returns the selected f (on the CPU) and the step it was selected at.
    """
    spec = method_spec(name)
    f = make_generator(cfg, data.n_labeled, name)
    model: nn.Module = Composed(f, denoiser) if spec.through_denoiser else f
    l2 = cfg.composed_l2 if spec.through_denoiser else cfg.direct_l2
    x_tr, y_tr = data.x["train"], data.y["train"]

    def batch_fn(step: int, g: torch.Generator):
        idx = torch.randint(len(x_tr), (cfg.batch_size,), generator=g)
        return x_tr[idx], y_tr[idx]

    def eval_fn(m: nn.Module) -> dict[str, float]:
        dev = next(f.parameters()).device
        pred = spec.predict(f, denoiser if spec.through_denoiser else None, data.x["val"].to(dev))
        return {"val_mse": float(standard_mse(pred.cpu(), data.y["val"]))}

    tc = _train_config(cfg, steps=cfg.steps, lr=cfg.lr, batch=cfg.batch_size, select=True, betas=(0.5, 0.999))
    res = train(model, training_loss(spec, l2, cfg.lam), batch_fn, tc, eval_fn=eval_fn, run_dir=run_dir)
    model.cpu()
    return f, res.best_step


@torch.no_grad()
def evaluate(cfg: FontsConfig, data: Tensors, denoiser: UNet, trained: dict[str, tuple[Generator, int | None]],
             out_dir: Path, sample_idx: np.ndarray) -> list[dict[str, Any]]:
    """Per-pixel MSE on [-1, 1] of every method on train / val / test; samples for the figure.

    Writes ``results.csv`` and ``samples.npz`` (targets and predictions of the test pairs
    ``sample_idx``) atomically, and returns the rows.
    """
    rows, samples = [], {"target": data.y["test"][sample_idx].numpy(), "pairs": data.x["test"][sample_idx].numpy()}
    for name in cfg.methods:
        spec = method_spec(name)
        f, best_step = trained[spec.reuse or name]
        pi = denoiser if spec.through_denoiser else None
        for split in ("train", "val", "test"):
            pred = spec.predict(f, pi, data.x[split])
            rows.append({"method": name, "split": split, "mse": float(standard_mse(pred, data.y[split])),
                         "seed": cfg.seed, "f_norm": f_norm(f), "best_step": best_step, "n": len(pred)})
            if split == "test":
                samples[name] = pred[sample_idx].numpy()
    atomic_write_csv(out_dir / "results.csv", rows, RESULT_FIELDS)
    buf = io.BytesIO()
    np.savez_compressed(buf, chars=np.array(list(CHARS)), **samples)
    atomic_write_bytes(out_dir / "samples.npz", buf.getvalue())
    return rows


def sample_indices(cfg: FontsConfig, n_test: int) -> np.ndarray:
    """Test pairs shown in the figure: a seeded choice independent of the training seed."""
    rng = np.random.default_rng(derive_seed(cfg.split_seed, "figure"))
    return np.sort(rng.choice(n_test, size=min(cfg.n_figure, n_test), replace=False))


def split_for(fonts: FontData, cfg: FontsConfig) -> Split:
    """:func:`simulations.fonts.data.make_split` on the usable fonts."""
    return make_split(len(fonts.paths), cfg)
