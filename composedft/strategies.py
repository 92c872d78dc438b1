"""Fine-tuning strategies behind one small API, in an open registry.

A strategy says how the base predictor f starts, what it is trained on and how it predicts
(docs README §1):

    direct    f random,                loss mse(f(x), y),                        predict f(x)
    standard  f <- Π's weights,        loss mse(f(x), y),                        predict f(x)
    composed  f <- Π's weights (paper) loss mse(Π(f(x)), y) + λ mse(f(x), y),    predict Π(f(x))
              or a checkpoint (the reference code starts from the standard fine-tuned f)
    posthoc   f <- standard's checkpoint, trains nothing,                        predict Π(f(x))

The built-in losses are those of continuous outputs (:mod:`composedft.objectives`); sequence
models register their own (token NLL, score-function composed loss) under the same names or new
ones. New methods (SMART, regularized fine-tuning, ...) are added with :func:`register_strategy`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn

from .compose import InitMode, init_base_predictor
from .objectives import composed_mse, standard_mse

__all__ = ["Strategy", "STRATEGIES", "register_strategy", "get_strategy", "make_base_predictor",
           "trainable_parameters", "loss_fn_for", "predict", "finetune"]

# (base_predictor, denoiser, x, y, lam) -> scalar loss to minimize
StrategyLoss = Callable[[nn.Module, nn.Module, Any, Any, float], torch.Tensor]


@dataclass(frozen=True)
class Strategy:
    """How one fine-tuning method initializes, trains and predicts.

    Attributes:
        name: registry name.
        init: where f starts: ``"random"``, ``"denoiser"`` (Π's weights) or ``"checkpoint"``.
        loss: ``(base_predictor, denoiser, x, y, lam) -> loss``; None means nothing is trained.
        predict_with_denoiser: the prediction is Π(f(x)) rather than f(x).
        description: one line for listings.
    """

    name: str
    init: InitMode
    loss: StrategyLoss | None
    predict_with_denoiser: bool
    description: str = ""

    @property
    def trains(self) -> bool:
        return self.loss is not None


def _standard_loss(f: nn.Module, denoiser: nn.Module, x: Any, y: Any, lam: float) -> torch.Tensor:
    return standard_mse(f(x), y)


def _composed_loss(f: nn.Module, denoiser: nn.Module, x: Any, y: Any, lam: float) -> torch.Tensor:
    return composed_mse(f, denoiser, x, y, lam=lam)


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, strategy: Strategy, *, overwrite: bool = False) -> Strategy:
    """Add ``strategy`` under ``name`` (refuses to replace one unless ``overwrite``)."""
    if name in STRATEGIES and not overwrite:
        raise ValueError(f"strategy '{name}' is already registered (pass overwrite=True to replace it)")
    if strategy.name != name:
        strategy = dataclasses.replace(strategy, name=name)
    STRATEGIES[name] = strategy
    return strategy


def get_strategy(name: str | Strategy) -> Strategy:
    """The registered strategy called ``name`` (a :class:`Strategy` passes through)."""
    if isinstance(name, Strategy):
        return name
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy '{name}' (choose from {', '.join(STRATEGIES)})") from None


register_strategy("direct", Strategy("direct", "random", _standard_loss, False,
                                     "train f from scratch on the labeled data"))
register_strategy("standard", Strategy("standard", "denoiser", _standard_loss, False,
                                       "initialize f from the denoiser, train all of f"))
register_strategy("composed", Strategy("composed", "denoiser", _composed_loss, True,
                                       "freeze the denoiser, train f so that denoiser(f(x)) fits"))
register_strategy("posthoc", Strategy("posthoc", "checkpoint", None, True,
                                      "apply the denoiser to a standard fine-tuned f at test time"))


def make_base_predictor(strategy: str | Strategy, *, factory: Callable[[], nn.Module],
                        denoiser: nn.Module | None = None, checkpoint: str | os.PathLike | None = None,
                        key: str | None = None, init: InitMode | None = None) -> nn.Module:
    """f for ``strategy`` (``init`` overrides the strategy's, e.g. composed from a checkpoint)."""
    s = get_strategy(strategy)
    return init_base_predictor(init or s.init, factory=factory, denoiser=denoiser, checkpoint=checkpoint, key=key)


def trainable_parameters(strategy: str | Strategy, base_predictor: nn.Module) -> list[nn.Parameter]:
    """The parameters the strategy trains: all of f's that require grad, none for post-hoc."""
    if not get_strategy(strategy).trains:
        return []
    return [p for p in base_predictor.parameters() if p.requires_grad]


def loss_fn_for(strategy: str | Strategy, denoiser: nn.Module | None, *, lam: float = 0.0
                ) -> Callable[[nn.Module, Any], torch.Tensor]:
    """A ``loss_fn(base_predictor, (x, y))`` for :func:`composedft.train.train`."""
    s = get_strategy(strategy)
    if s.loss is None:
        raise ValueError(f"strategy '{s.name}' trains nothing")
    loss = s.loss

    def loss_fn(base_predictor: nn.Module, batch: tuple[Any, Any]) -> torch.Tensor:
        x, y = batch
        return loss(base_predictor, denoiser, x, y, lam)

    return loss_fn


@torch.no_grad()
def predict(strategy: str | Strategy, base_predictor: nn.Module, denoiser: nn.Module | None, x: Any) -> Any:
    """The strategy's prediction, f(x) or Π(f(x)), in eval mode and without gradients."""
    s = get_strategy(strategy)
    modes = [(m, m.training) for m in (base_predictor, denoiser) if m is not None]
    for m, _ in modes:
        m.eval()
    try:
        out = base_predictor(x)
        if s.predict_with_denoiser:
            if denoiser is None:
                raise ValueError(f"strategy '{s.name}' predicts with the denoiser; pass denoiser=")
            out = denoiser(out)
        return out
    finally:
        for m, mode in modes:
            m.train(mode)


def finetune(strategy: str | Strategy, base_predictor: nn.Module, denoiser: nn.Module | None,
             batch_fn: Callable[[int, torch.Generator], Any], cfg: Any, *, lam: float = 0.0,
             eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
             run_dir: str | os.PathLike | None = None, resume: bool = True):
    """Train ``base_predictor`` with the strategy's loss (:func:`composedft.train.train`).

    ``eval_fn`` receives f. The denoiser, when given, is frozen first, so it is never trained.
    Returns the :class:`composedft.train.TrainResult` (``None`` for strategies that train nothing).
    """
    from .compose import freeze
    from .devices import resolve_device
    from .train import train

    s = get_strategy(strategy)
    if denoiser is not None:
        freeze(denoiser).to(resolve_device(cfg.device))
    if not s.trains:
        return None
    if s.predict_with_denoiser and denoiser is None:
        raise ValueError(f"strategy '{s.name}' needs the denoiser")
    return train(base_predictor, loss_fn_for(s, denoiser, lam=lam), batch_fn, cfg,
                 params=trainable_parameters(s, base_predictor), eval_fn=eval_fn, run_dir=run_dir, resume=resume)
