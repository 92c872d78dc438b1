"""Fine-tuning methods as an open registry (names match ``composedft.strategies``).

A method says how the base predictor f is initialized, which loss it trains (weights of the
standard term ||f(x) - y||^2 and of the composed term ||Pi(f(x)) - y||^2, plus an optional extra
per-network regularizer, the hook that SMART and friends plug into), and whether its prediction
is f(x) or Pi(f(x)). Post-hoc trains nothing: it reuses another method's f and applies Pi.

    direct    random init,          loss ||f - y||^2,                       predict f
    standard  init from Pi,         loss ||f - y||^2,                       predict f
    composed  init from Pi (paper)  loss ||Pi(f) - y||^2 + lam ||f - y||^2, predict Pi(f)
              or from standard (reference code; ``composed_init``)
    posthoc   f of standard,        no training,                            predict Pi(f)
    composed_scratch  random init,  composed loss (ours, not the paper's): separates the effect of
              the composed objective from that of initializing f at the denoiser's high norm R(Pi)

Weight decay (1/2)sum(a^2 + w^2) applies to every trained method alike.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from .config import ReluConfig, Setting

__all__ = ["Method", "METHODS", "register", "get_method", "training_phases"]

# (params of the trained rows, x [S, N], mask [S, N]) -> per-row penalty [S]
Regularizer = Callable[[dict, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Method:
    """How one fine-tuning method initializes, trains and predicts.

    Attributes:
        name: registry name (the same string as the core's strategy).
        init: ``cfg, setting -> "random" | "denoiser" | <method name>``; a method name means
            "start from that method's trained f", which orders training into phases.
        std_weight: weight of the standard term ||f(x) - y||^2.
        comp_weight: weight of the composed term ||Pi(f(x)) - y||^2 (Pi frozen).
        predict_with_denoiser: predictions are Pi(f(x)) rather than f(x).
        reuse: train nothing and take f from this method (post-hoc).
        regularizer: optional extra per-network penalty added to the loss.
    """

    name: str
    init: Callable[[ReluConfig, Setting], str]
    std_weight: Callable[[ReluConfig, Setting], float]
    comp_weight: Callable[[ReluConfig, Setting], float]
    predict_with_denoiser: bool
    reuse: Optional[str] = None
    regularizer: Optional[Regularizer] = None
    description: str = ""

    @property
    def trains(self) -> bool:
        return self.reuse is None


METHODS: dict[str, Method] = {}


def register(method: Method, *, overwrite: bool = False) -> Method:
    """Add a method to the registry (refuses silent replacement)."""
    if method.name in METHODS and not overwrite:
        raise ValueError(f"method '{method.name}' is already registered")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}' (registered: {', '.join(METHODS)})") from None


def training_phases(cfg: ReluConfig, setting: Setting, names: list[str]) -> list[list[str]]:
    """Order trained methods so that a method starting from another's f comes after it.

    Raises:
        ValueError: a method depends on one that is not in ``names`` or on itself (a cycle).
    """
    todo = {n: get_method(n) for n in names if get_method(n).trains}
    for n in names:  # post-hoc style methods need their source trained too
        src = get_method(n).reuse
        if src is not None and src not in todo:
            raise ValueError(f"method '{n}' reuses '{src}', which is not in the method list")
    done: set[str] = set()
    phases = []
    while todo:
        ready = [n for n, m in todo.items()
                 if m.init(cfg, setting) in ("random", "denoiser") or m.init(cfg, setting) in done]
        if not ready:
            raise ValueError(f"methods {sorted(todo)} start from methods that are never trained")
        phases.append(ready)
        done.update(ready)
        for n in ready:
            del todo[n]
    return phases


register(Method("direct", init=lambda c, s: "random", std_weight=lambda c, s: 1.0,
                comp_weight=lambda c, s: 0.0, predict_with_denoiser=False,
                description="train f from a random init on the labeled data"))
register(Method("standard", init=lambda c, s: "denoiser", std_weight=lambda c, s: 1.0,
                comp_weight=lambda c, s: 0.0, predict_with_denoiser=False,
                description="init f from the denoiser's weights, train all of f"))
register(Method("composed",
                init=lambda c, s: "denoiser" if c.composed_init == "denoiser" else "standard",
                std_weight=lambda c, s: float(s.lam), comp_weight=lambda c, s: 1.0,
                predict_with_denoiser=True,
                description="Pi frozen; train f on ||Pi(f(x)) - y||^2 + lam ||f(x) - y||^2"))
register(Method("posthoc", init=lambda c, s: "standard", std_weight=lambda c, s: 0.0,
                comp_weight=lambda c, s: 0.0, predict_with_denoiser=True, reuse="standard",
                description="apply Pi to the standard fine-tuned f at test time"))
register(Method("composed_scratch", init=lambda c, s: "random", std_weight=lambda c, s: float(s.lam),
                comp_weight=lambda c, s: 1.0, predict_with_denoiser=True,
                description="composed objective from a random (low-norm) init: isolates the init's effect"))
