"""The training loop: AdamW, a learning-rate schedule, gradient clipping, periodic evaluation,
model selection, atomic checkpoints and bitwise-exact resume.

Exact resume rests on one design rule: **the batch stream is a function of (seed, step)**. The
loop calls ``batch_fn(step, generator)`` with a fresh ``torch.Generator`` seeded from
``derive_seed(cfg.seed, "batch", step)``, so a resumed run draws the same batch at step s as an
uninterrupted one, whatever happened before. Other randomness (dropout, sampling inside the
loss through the global generators) is covered by saving and restoring the python, numpy and
torch RNG states with the model, optimizer and scheduler. A run killed after the checkpoint at
step N and restarted with ``resume=True`` therefore ends with bitwise the same parameters as a
run that was never interrupted (tested on CPU; on CUDA this also needs deterministic kernels,
``seed_everything(..., deterministic=True)``).

Only parameters that require grad reach the optimizer, so a frozen denoiser is never stepped
or weight-decayed (docs/method.md §1.5: the reference code builds its optimizer from f's
parameters alone).
"""
from __future__ import annotations

import dataclasses
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

import numpy as np
import torch
import torch.nn as nn

from .config import ConfigError, cfg_to_dict
from .devices import resolve_device
from .io import CheckpointError, atomic_write_csv, load_checkpoint, save_checkpoint
from .progress import Progress
from .seeding import derive_seed, seed_everything, torch_generator

__all__ = ["TrainConfig", "TrainResult", "train", "lr_factor", "LAST_CKPT", "BEST_CKPT"]

LAST_CKPT = "last.pt"   # full training state, for resume
BEST_CKPT = "best.pt"   # model state of the best evaluation (model selection)

# Fields that change the trajectory: a checkpoint written under other values is not resumed.
_TRAJECTORY_FIELDS = ("lr", "batch_size", "weight_decay", "betas", "grad_clip", "schedule", "warmup",
                      "min_lr_ratio", "seed")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train` (one field, one meaning)."""

    lr: float = 1e-3                  # peak learning rate of AdamW
    steps: int = 1000                 # optimizer steps in total (a resumed run stops here too)
    batch_size: int = 32              # read by the caller's batch_fn; recorded with the run
    weight_decay: float = 0.0         # AdamW decoupled weight decay (trainable params only)
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    grad_clip: float = 0.0            # max global gradient norm; 0 disables clipping
    schedule: Literal["constant", "cosine", "inverse_sqrt", "linear"] = "constant"
    warmup: int = 0                   # linear warmup steps (all schedules)
    min_lr_ratio: float = 0.0         # floor of cosine / linear decay, as a fraction of lr
    eval_every: int = 0               # evaluate every this many steps (0: only at the end)
    ckpt_every: int = 0               # checkpoint every this many steps (0: only at the end)
    seed: int = 0                     # seeds the batch stream and the global RNGs
    device: str = "auto"              # auto | cpu | cuda | cuda:N | mps
    select_metric: str = ""           # eval_fn metric for model selection ("" keeps the last)
    select_mode: Literal["min", "max"] = "min"
    restore_best: bool = True         # load the selected (best) state into the model at the end
    patience: int = 0                 # early stopping: stop after this many evaluations without a
                                      # better select_metric (0: train all ``steps``)
    progress: bool | None = None      # tqdm bar; None: bar on a terminal, else a plain line every 30 s

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first field with an impossible value."""
        checks = [("lr", self.lr > 0), ("steps", self.steps >= 0), ("batch_size", self.batch_size >= 1),
                  ("weight_decay", self.weight_decay >= 0), ("grad_clip", self.grad_clip >= 0),
                  ("warmup", self.warmup >= 0), ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1),
                  ("eval_every", self.eval_every >= 0), ("ckpt_every", self.ckpt_every >= 0),
                  ("patience", self.patience >= 0),
                  ("betas", len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)),
                  ("schedule", self.schedule in ("constant", "cosine", "inverse_sqrt", "linear")),
                  ("select_mode", self.select_mode in ("min", "max"))]
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"TrainConfig field '{name}': invalid value {getattr(self, name)!r}")


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        step: the number of optimizer steps taken in total (== cfg.steps unless stopped early).
        history: one dict per evaluation: ``step``, ``lr``, ``train_loss`` (mean since the
            previous evaluation) and the metrics of ``eval_fn``.
        best_metric / best_step: the selected evaluation (None without selection).
        best_state: the model's ``state_dict`` at ``best_step`` (CPU tensors), or None.
        resumed_from: the step of the checkpoint this call resumed from, or None.
        wall_s: wall time of this call.
        stopped_early: True when ``cfg.patience`` evaluations in a row did not improve.
    """

    step: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_metric: float | None = None
    best_step: int | None = None
    best_state: dict[str, torch.Tensor] | None = None
    resumed_from: int | None = None
    wall_s: float = 0.0
    stopped_early: bool = False


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Multiplier of ``cfg.lr`` for the update at 0-based ``step``.

    Warmup is linear, (s+1)/(warmup+1) (nanoGPT). After it, with p = (s - warmup)/(steps - warmup):
    constant 1; cosine m + (1-m)(1 + cos πp)/2; linear 1 - (1-m)p; inverse_sqrt
    sqrt(max(warmup,1)/max(s,1)) (fairseq's, equal to 1 at the end of warmup). m = min_lr_ratio.
    """
    if step < cfg.warmup:
        return (step + 1) / (cfg.warmup + 1)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "inverse_sqrt":
        return math.sqrt(max(cfg.warmup, 1) / max(step, 1))
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    m = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return m + (1 - m) * 0.5 * (1 + math.cos(math.pi * p))
    return 1.0 - (1 - m) * p  # linear


def _to_device(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_to_device(v, device) for v in obj)
    if isinstance(obj, list):
        return [_to_device(v, device) for v in obj]
    return obj


def _rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as tensors / plain values (``weights_only``-loadable)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    return {
        "python": {"version": py_version, "state": torch.tensor(py_state, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["name"], nps["keys"].numpy().astype(np.uint32), nps["pos"], nps["has_gauss"],
                         nps["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _check_resumable(ckpt: Mapping[str, Any], cfg: TrainConfig, path: Path) -> None:
    saved = ckpt.get("config", {})
    now = cfg_to_dict(cfg)
    for name in _TRAJECTORY_FIELDS:
        if name in saved and saved[name] != now[name]:
            raise ConfigError(f"{path}: cannot resume: field '{name}' was {saved[name]!r} in the checkpoint "
                              f"and is {now[name]!r} now (use another run folder, or resume=False)")


_NOT_SHOWN = ("step", "lr", "train_loss")  # history fields the progress postfix leaves out


def _progress_desc(run_dir: Path | None) -> str:
    """The bar's label: the run folder's name (a pipeline stage's ``stages/<name>``), else train."""
    return run_dir.name if run_dir is not None else "train"


def _is_secondary_rank() -> bool:
    """True on every rank but 0 of an initialised process group: only rank 0 reports progress."""
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized() and dist.get_rank() != 0


def _is_better(value: float, best: float | None, mode: str) -> bool:
    if best is None:
        return True
    return value < best if mode == "min" else value > best


def evals_since_best(history: list[Mapping[str, float]], best_step: int | None) -> int:
    """Evaluations after the selected one (all of them when nothing is selected yet)."""
    return sum(1 for h in history if best_step is None or h["step"] > best_step)


def train(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Any], batch_fn: Callable[[int, torch.Generator], Any],
          cfg: TrainConfig, *, params: Iterable[nn.Parameter] | None = None,
          eval_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
          run_dir: str | Path | None = None, resume: bool = True) -> TrainResult:
    """Train ``model`` for ``cfg.steps`` AdamW steps; evaluate, select, checkpoint, resume.

    Args:
        model: the module to train (e.g. a :class:`composedft.compose.Composed`); moved to
            ``cfg.device``. It is in train mode during steps and eval mode during ``eval_fn``.
        loss_fn: ``(model, batch) -> loss`` or ``(loss, stats)``; a scalar to minimize.
        batch_fn: ``(step, generator) -> batch``; must draw its randomness from ``generator``
            (seeded from (cfg.seed, step)) so that resume is exact. Tensors in the batch (also
            inside tuples, lists and dicts) are moved to the device.
        cfg: the :class:`TrainConfig`.
        params: parameters to optimize (default: all of ``model``'s); only those with
            ``requires_grad`` are kept, so a frozen denoiser never reaches the optimizer.
        eval_fn: ``model -> {metric: value}``, called every ``cfg.eval_every`` steps and at the
            end; ``cfg.select_metric`` picks the best state (kept in memory, saved to
            ``best.pt``).
        run_dir: folder for ``last.pt`` (full state), ``best.pt`` and ``eval.csv``; None keeps
            nothing on disk.
        resume: continue from ``run_dir/last.pt`` when it exists.

    Progress (``cfg.progress``, :class:`composedft.progress.Progress`) goes to stderr on rank 0
    only, labelled with ``run_dir``'s name: steps, rate, ETA, the mean train loss since the
    last evaluation and the latest eval metrics. It only reads finished numbers, so the
    trajectory is the same with or without it (tests/test_core_progress.py).

    Returns:
        A :class:`TrainResult`. With ``cfg.restore_best`` and a selection, the model holds the
        best state on return; otherwise the last.

    Raises:
        ValueError: no trainable parameter. FloatingPointError: a non-finite loss.
        ConfigError: the checkpoint was written with a different trajectory config.
        CheckpointError: the checkpoint to resume from is unreadable.
    """
    t0 = time.time()
    device = resolve_device(cfg.device)
    model.to(device)
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not params:
        raise ValueError("train: no parameter requires grad (is the whole model frozen?)")
    opt = torch.optim.AdamW(params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    selecting = bool(cfg.select_metric) and eval_fn is not None
    result = TrainResult(step=0)
    loss_acc = [0.0, 0]  # sum and count of train losses since the last evaluation
    run_dir = Path(run_dir) if run_dir is not None else None
    last_path = run_dir / LAST_CKPT if run_dir is not None else None

    if last_path is not None and resume and last_path.exists():
        ckpt = load_checkpoint(last_path, map_location="cpu")
        _check_resumable(ckpt, cfg, last_path)
        try:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            _set_rng_state(ckpt["rng"])
            result.step = result.resumed_from = int(ckpt["step"])
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise CheckpointError(f"{last_path}: cannot resume from this checkpoint "
                                  f"({type(err).__name__}: {err})") from None
        result.history = list(ckpt.get("history", []))
        result.best_metric, result.best_step = ckpt.get("best_metric"), ckpt.get("best_step")
        result.best_state = ckpt.get("best_state")
        loss_acc = list(ckpt.get("loss_acc", loss_acc))
    else:
        seed_everything(derive_seed(cfg.seed, "train"))

    saved_at = [result.resumed_from]

    def checkpoint() -> None:
        saved_at[0] = result.step
        save_checkpoint(last_path, {
            "model": _cpu_state(model), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
            "rng": _rng_state(), "step": result.step, "config": cfg_to_dict(cfg), "history": result.history,
            "best_metric": result.best_metric, "best_step": result.best_step, "best_state": result.best_state,
            "loss_acc": list(loss_acc)})

    def evaluate() -> None:
        train_loss = loss_acc[0] / loss_acc[1] if loss_acc[1] else float("nan")
        loss_acc[:] = [0.0, 0]
        model.eval()
        with torch.no_grad():
            metrics = {k: float(v) for k, v in eval_fn(model).items()}
        model.train()
        if selecting and cfg.select_metric not in metrics:
            raise KeyError(f"select_metric '{cfg.select_metric}' is not among the eval metrics "
                           f"({', '.join(metrics)})")
        result.history.append({"step": result.step, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                               **metrics})
        if selecting and _is_better(metrics[cfg.select_metric], result.best_metric, cfg.select_mode):
            result.best_metric, result.best_step = metrics[cfg.select_metric], result.step
            result.best_state = _cpu_state(model)
            if run_dir is not None:
                save_checkpoint(run_dir / BEST_CKPT, {"model": result.best_state, "step": result.step,
                                                      "metric": cfg.select_metric, "value": result.best_metric})
        if run_dir is not None:
            atomic_write_csv(run_dir / "eval.csv", result.history)

    model.train()
    bar = Progress(cfg.steps, _progress_desc(run_dir), unit="step", initial=min(result.step, cfg.steps),
                   enabled=False if _is_secondary_rank() else cfg.progress)
    def out_of_patience() -> bool:  # a function of the saved history: a resumed run stops where it did
        return bool(cfg.patience and selecting and evals_since_best(result.history, result.best_step) >= cfg.patience)

    try:
        while result.step < cfg.steps and not out_of_patience():
            batch = _to_device(batch_fn(result.step, torch_generator(derive_seed(cfg.seed, "batch", result.step))),
                               device)
            out = loss_fn(model, batch)
            loss, stats = out if isinstance(out, tuple) else (out, {})
            if not bool(torch.isfinite(loss.detach())):
                raise FloatingPointError(f"train: loss is {float(loss.detach())} at step {result.step}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            result.step += 1
            loss_acc[0] += float(loss.detach())
            loss_acc[1] += 1
            if not bar.disabled:  # reporting reads finished numbers only: it cannot change them
                bar.set_postfix(loss=loss_acc[0] / loss_acc[1], **{k: float(v) for k, v in stats.items()})
            bar.update(1)
            if eval_fn is not None and cfg.eval_every and result.step % cfg.eval_every == 0:
                evaluate()
                bar.set_postfix(**{k: v for k, v in result.history[-1].items() if k not in _NOT_SHOWN})
            if last_path is not None and cfg.ckpt_every and result.step % cfg.ckpt_every == 0:
                checkpoint()
    finally:
        bar.close()
    result.stopped_early = result.step < cfg.steps
    if eval_fn is not None and (not result.history or result.history[-1]["step"] != result.step):
        evaluate()
    if last_path is not None and saved_at[0] != result.step:
        checkpoint()
    if selecting and cfg.restore_best and result.best_state is not None:
        model.load_state_dict(result.best_state)
    result.wall_s = time.time() - t0
    return result
