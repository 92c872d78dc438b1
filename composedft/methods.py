"""The one registry of fine-tuning methods, used by every experiment (docs/method.md §1).

A :class:`Method` names four things: how the base predictor f starts (``init``), what it trains
(``objective``; nothing when it ``reuse``-s another method's f), and what it predicts (f(x), or
Π(f(x)) when ``predict_with_denoiser``):

    method            init                      objective   predicts   note
    direct            random                    standard    f
    standard          denoiser (Π's weights)    standard    f
    composed          denoiser | composed_init  composed    Π(f)       paper: from Π; reference code:
                                                                       from the standard f
    composed-denoiser-init  denoiser            composed    Π(f)       always from Π, whatever
                                                                       composed_init says
    posthoc           (reuses standard)         -           Π(f)       the ReLU study's name
    standard+posthoc  (reuses standard)         -           Π(f)       the code pipeline's name
    direct+posthoc    (reuses direct)           -           Π(f)
    composed-base     (reuses composed)         -           f          f alone, without Π
    bt                denoiser (Π's weights)    standard    f          labeled + back-translated
                                                                       pairs (data="labeled+bt")
    bt+composed       bt                        composed    Π(f)       composed from bt's f

An experiment implements each *objective* in its own domain (continuous outputs: the losses of
:mod:`composedft.objectives`, registered below; token sequences: NLL and the score-function
composed loss; the batched ReLU trainer: loss weights) and looks methods up by name. Adding a
method is one :func:`register_method` call plus, if its objective is new, that objective's
implementation. A method's ``init`` may name a config field (``init_field``) through which an
experiment overrides it, e.g. ``composed_init = "standard"`` (the reference code's choice).

A method's ``data`` says what f trains on: ``"labeled"`` (the labeled pairs, every method but
one) or ``"labeled+bt"``: the labeled pairs plus back-translated ones, (g(y), y) for unlabeled
programs y and a reverse model g (the paper's BT baseline, Xie et al. 2021 §4; built by the code
pipeline's ``backtranslate`` stage, docs/code-pipeline.md §7). An experiment states which data it
can build (:func:`check_methods`'s ``data``) and refuses the other methods by name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import torch
import torch.nn as nn

from .compose import init_base_predictor
from .objectives import composed_mse, standard_mse

__all__ = ["Method", "METHODS", "registry_order", "BASE_INITS", "DATA_SOURCES", "register_method", "get_method", "resolve_init", "with_dependencies", "check_methods", "training_phases",
           "OBJECTIVES", "register_objective", "loss_fn_for", "make_base_predictor", "trainable_parameters",
           "predict", "finetune"]

BASE_INITS = ("random", "denoiser")
DATA_SOURCES = ("labeled", "labeled+bt")  # what a method's f trains on (module docstring)


@dataclass(frozen=True)
class Method:
    """How one fine-tuning method initializes, trains and predicts.

    Attributes:
        name: registry name, as it appears in results.
        init: ``"random"``, ``"denoiser"`` or the name of another method whose trained f is the
            start (which orders training into phases, :func:`training_phases`).
        objective: name of the trained objective (``"standard"``, ``"composed"``, ...); ``None``
            when the method trains nothing and ``reuse``-s another method's f.
        predict_with_denoiser: the prediction is Π(f(x)) rather than f(x).
        reuse: train nothing and take f from this method (post-hoc, base-only).
        init_field: a config field that, when an experiment's config has it, overrides ``init``.
        description: one line for listings.
        data: what f trains on, one of :data:`DATA_SOURCES`: ``"labeled"`` or ``"labeled+bt"``
            (labeled + back-translated pairs); only a method that trains may use other than
            ``"labeled"``.
    """

    name: str
    init: str
    objective: str | None
    predict_with_denoiser: bool
    reuse: str | None = None
    init_field: str | None = None
    description: str = ""
    data: str = "labeled"

    def __post_init__(self) -> None:
        if (self.objective is None) == (self.reuse is None):
            raise ValueError(f"method '{self.name}': give exactly one of objective= (it trains) or reuse= "
                             "(it takes another method's f)")
        if self.data not in DATA_SOURCES:
            raise ValueError(f"method '{self.name}': data='{self.data}' is not one of {', '.join(DATA_SOURCES)}")
        if self.reuse is not None and self.data != "labeled":
            raise ValueError(f"method '{self.name}': it trains nothing (reuse='{self.reuse}'), so data= must "
                             "stay 'labeled'")

    @property
    def trains(self) -> bool:
        return self.reuse is None


METHODS: dict[str, Method] = {}


def register_method(method: Method, *, overwrite: bool = False) -> Method:
    """Add ``method`` to the registry (refuses to replace one unless ``overwrite``)."""
    if method.name in METHODS and not overwrite:
        raise ValueError(f"method '{method.name}' is already registered (pass overwrite=True to replace it)")
    METHODS[method.name] = method
    return method


def registry_order(names: Iterable[str]) -> list[str]:
    """``names`` without repeats in the order tables and figures list methods: registered ones in
    registration order, any other name after them in its given order (the sort is stable)."""
    rank = {m: i for i, m in enumerate(METHODS)}
    return sorted(dict.fromkeys(names), key=lambda m: rank.get(m, len(rank)))


def get_method(name: str | Method) -> Method:
    """The registered method called ``name`` (a :class:`Method` passes through)."""
    if isinstance(name, Method):
        return name
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method '{name}' (choose from {', '.join(METHODS)})") from None


def resolve_init(method: str | Method, cfg: Any = None) -> str:
    """Where f starts for ``method`` under an experiment's ``cfg`` (``init_field`` overrides)."""
    m = get_method(method)
    if m.init_field is not None and cfg is not None and hasattr(cfg, m.init_field):
        return str(getattr(cfg, m.init_field))
    return m.init


def with_dependencies(names: Iterable[str], cfg: Any = None) -> list[str]:
    """``names`` plus every method they reuse or start from, transitively (first-seen order)."""
    out = list(dict.fromkeys(names))
    i = 0
    while i < len(out):
        m = get_method(out[i])
        for dep in (m.reuse, None if m.reuse else resolve_init(m, cfg)):
            if dep is not None and dep not in BASE_INITS and dep not in out:
                out.append(dep)
        i += 1
    return out


def check_methods(names: Iterable[str], cfg: Any, objectives: Iterable[str], *, domain: str,
                  data: Iterable[str] = ("labeled",)) -> None:
    """What an experiment's config checks: every method is registered, each trained one's objective
    is among the ``objectives`` this ``domain`` implements and its ``data`` among the ``data`` it
    builds (by default the labeled pairs only), and training can be ordered.

    Raises:
        ValueError: naming the method (and objective or data) at fault.
    """
    names, objectives, data = list(names), tuple(objectives), tuple(data)
    if not names:
        raise ValueError("give at least one method")
    for n in names:
        m = get_method(n)
        if m.trains and m.objective not in objectives:
            raise ValueError(f"method '{n}': objective '{m.objective}' is not implemented by {domain} "
                             f"({', '.join(objectives)})")
        if m.trains and m.data not in data:
            raise ValueError(f"method '{n}': trains on data '{m.data}', which {domain} does not build "
                             f"({', '.join(data)})")
    training_phases(names, cfg)


def training_phases(names: Iterable[str], cfg: Any = None) -> list[list[str]]:
    """Order the trained methods among ``names`` so that one starting from another's f comes after it.

    Methods that reuse another's f must find their source in ``names`` too.

    Raises:
        ValueError: a method starts from or reuses a method not in ``names``, or a cycle.
    """
    names = list(names)
    for n in names:
        src = get_method(n).reuse
        if src is not None and src not in names:
            raise ValueError(f"method '{n}' reuses '{src}', which is not in the method list")
    todo = {n: resolve_init(n, cfg) for n in names if get_method(n).trains}
    for n, init in todo.items():
        if init not in BASE_INITS and init not in todo:
            raise ValueError(f"method '{n}' starts from '{init}', which is not trained in this run")
    done: set[str] = set()
    phases = []
    while todo:
        ready = [n for n, init in todo.items() if init in BASE_INITS or init in done]
        if not ready:
            raise ValueError(f"methods {sorted(todo)} start from each other (a cycle)")
        phases.append(ready)
        done.update(ready)
        for n in ready:
            del todo[n]
    return phases


for _m in (
    Method("direct", "random", "standard", False, description="train f from a random init on the labeled data"),
    Method("standard", "denoiser", "standard", False, description="initialize f from the denoiser, train all of f"),
    Method("composed", "denoiser", "composed", True, init_field="composed_init",
           description="freeze the denoiser, train f so that denoiser(f(x)) fits (+ lam x standard)"),
    Method("composed-denoiser-init", "denoiser", "composed", True,
           description="composed fine-tuning with f always started from the denoiser (the paper's text)"),
    Method("smart", "denoiser", "smart", False,
           description="init from the denoiser; standard loss + SMART smoothness term (docs/related-methods.md)"),
    Method("composed+smart", "denoiser", "composed+smart", True, init_field="composed_init",
           description="composed fine-tuning + SMART smoothness term on f"),
    Method("posthoc", "standard", None, True, reuse="standard",
           description="apply the denoiser to the standard fine-tuned f at test time"),
    Method("standard+posthoc", "standard", None, True, reuse="standard",
           description="apply the denoiser to the standard fine-tuned f at test time"),
    Method("direct+posthoc", "direct", None, True, reuse="direct",
           description="apply the denoiser to the directly trained f at test time"),
    Method("composed-base", "composed", None, False, reuse="composed",
           description="the composed method's base predictor f alone, without the denoiser"),
    Method("bt", "denoiser", "standard", False, data="labeled+bt",
           description="back-translation (paper §4 BT): standard fine-tuning on labeled + back-translated pairs"),
    Method("bt+composed", "bt", "composed", True,
           description="composed fine-tuning (labeled pairs) started from the bt method's f"),
):
    register_method(_m)


# ---- continuous outputs: objectives on (f, Π, x, y, lam), for composedft.train -----------------

# (base_predictor, denoiser, x, y, lam) -> scalar loss to minimize
Objective = Callable[[nn.Module, nn.Module, Any, Any, float], torch.Tensor]

OBJECTIVES: dict[str, Objective] = {
    "standard": lambda f, denoiser, x, y, lam: standard_mse(f(x), y),
    "composed": lambda f, denoiser, x, y, lam: composed_mse(f, denoiser, x, y, lam=lam),
}


def register_objective(name: str, objective: Objective, *, overwrite: bool = False) -> Objective:
    """Add a continuous-output objective (e.g. a regularized fine-tuning loss) under ``name``."""
    if name in OBJECTIVES and not overwrite:
        raise ValueError(f"objective '{name}' is already registered")
    OBJECTIVES[name] = objective
    return objective


def loss_fn_for(method: str | Method, denoiser: nn.Module | None, *, lam: float = 0.0
                ) -> Callable[[nn.Module, Any], torch.Tensor]:
    """A ``loss_fn(base_predictor, (x, y))`` for :func:`composedft.train.train`."""
    m = get_method(method)
    if m.objective is None:
        raise ValueError(f"method '{m.name}' trains nothing (it reuses '{m.reuse}')")
    try:
        objective = OBJECTIVES[m.objective]
    except KeyError:
        raise ValueError(f"method '{m.name}': no continuous-output objective '{m.objective}' "
                         f"(registered: {', '.join(OBJECTIVES)})") from None

    def loss_fn(base_predictor: nn.Module, batch: tuple[Any, Any]) -> torch.Tensor:
        x, y = batch
        return objective(base_predictor, denoiser, x, y, lam)

    return loss_fn


def make_base_predictor(method: str | Method, *, factory: Callable[[], nn.Module],
                        denoiser: nn.Module | None = None, checkpoint: str | os.PathLike | None = None,
                        key: str | None = None, cfg: Any = None) -> nn.Module:
    """f for ``method``: random, a copy of Π, or (init or reuse naming a method) ``checkpoint``."""
    m = get_method(method)
    init = m.reuse or resolve_init(m, cfg)
    mode = init if init in BASE_INITS else "checkpoint"
    if mode == "checkpoint" and checkpoint is None:
        raise ValueError(f"method '{m.name}' starts from method '{init}': pass checkpoint= (its trained f)")
    return init_base_predictor(mode, factory=factory, denoiser=denoiser, checkpoint=checkpoint, key=key)


def trainable_parameters(method: str | Method, base_predictor: nn.Module) -> list[nn.Parameter]:
    """The parameters the method trains: all of f's that require grad; none when it reuses."""
    if not get_method(method).trains:
        return []
    return [p for p in base_predictor.parameters() if p.requires_grad]


@torch.no_grad()
def predict(method: str | Method, base_predictor: nn.Module, denoiser: nn.Module | None, x: Any) -> Any:
    """The method's prediction, f(x) or Π(f(x)), in eval mode and without gradients."""
    m = get_method(method)
    modes = [(mod, mod.training) for mod in (base_predictor, denoiser) if mod is not None]
    for mod, _ in modes:
        mod.eval()
    try:
        out = base_predictor(x)
        if m.predict_with_denoiser:
            if denoiser is None:
                raise ValueError(f"method '{m.name}' predicts with the denoiser; pass denoiser=")
            out = denoiser(out)
        return out
    finally:
        for mod, mode in modes:
            mod.train(mode)


def finetune(method: str | Method, base_predictor: nn.Module, denoiser: nn.Module | None,
             batch_fn: Callable[[int, torch.Generator], Any], cfg: Any, *, lam: float = 0.0,
             eval_fn: Callable[[nn.Module], dict[str, float]] | None = None,
             run_dir: str | os.PathLike | None = None, resume: bool = True):
    """Train ``base_predictor`` with the method's objective (:func:`composedft.train.train`).

    The denoiser, when given, is frozen first, so it is never trained. Returns the
    :class:`composedft.train.TrainResult` (``None`` for methods that train nothing).
    """
    from .compose import freeze
    from .devices import resolve_device
    from .train import train

    m = get_method(method)
    if denoiser is not None:
        freeze(denoiser).to(resolve_device(cfg.device))
    if not m.trains:
        return None
    if m.objective == "composed" and denoiser is None:
        raise ValueError(f"method '{m.name}' needs the denoiser")
    return train(base_predictor, loss_fn_for(m, denoiser, lam=lam), batch_fn, cfg,
                 params=trainable_parameters(m, base_predictor), eval_fn=eval_fn, run_dir=run_dir, resume=resume)

