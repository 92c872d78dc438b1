"""The ReLU study's implementation of the core registry's objectives (docs/method.md §1).

Methods are looked up by name in :mod:`composedft.methods`; this module says what each
*objective* means for the batched two-layer trainer (:mod:`simulations.relu.train`): the weights
of the standard term ||f(x) - y||^2 and of the composed term ||Pi(f(x)) - y||^2 (Pi frozen), and an
optional extra per-network regularizer (the hook that SMART and friends plug into). Weight decay
(1/2)sum(a^2 + w^2) applies to every trained method alike.

It also registers the study's own method:

    composed_scratch  random init, composed objective (ours, not the paper's): separates the
                      effect of the composed objective from that of initializing f at the
                      denoiser's high norm R(Pi)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from composedft.methods import Method, get_method, register_method

from .config import ReluConfig, Setting

__all__ = ["ReluObjective", "OBJECTIVES", "register_objective", "objective_of"]

# (params of the trained rows, x [S, N], mask [S, N]) -> per-row penalty [S]
Regularizer = Callable[[dict, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ReluObjective:
    """One objective in the batched trainer's terms.

    Attributes:
        std_weight: ``cfg, setting ->`` weight of the standard term ||f(x) - y||^2.
        comp_weight: ``cfg, setting ->`` weight of the composed term ||Pi(f(x)) - y||^2.
        regularizer: optional extra per-network penalty added to the loss.
    """

    std_weight: Callable[[ReluConfig, Setting], float]
    comp_weight: Callable[[ReluConfig, Setting], float]
    regularizer: Optional[Regularizer] = None


OBJECTIVES: dict[str, ReluObjective] = {
    "standard": ReluObjective(lambda c, s: 1.0, lambda c, s: 0.0),
    "composed": ReluObjective(lambda c, s: float(s.lam), lambda c, s: 1.0),
}


def register_objective(name: str, objective: ReluObjective, *, overwrite: bool = False) -> ReluObjective:
    """Give an objective of the core registry its batched-trainer implementation."""
    if name in OBJECTIVES and not overwrite:
        raise ValueError(f"ReLU objective '{name}' is already registered")
    OBJECTIVES[name] = objective
    return objective


def objective_of(name: str) -> ReluObjective:
    """The batched-trainer implementation of method ``name``'s objective."""
    m = get_method(name)
    if m.objective not in OBJECTIVES:
        raise ValueError(f"method '{name}': the ReLU study has no implementation of objective "
                         f"'{m.objective}' (has: {', '.join(OBJECTIVES)})")
    return OBJECTIVES[m.objective]


register_method(Method("composed_scratch", "random", "composed", True,
                       description="composed objective from a random (low-norm) init: isolates the init's effect"))
