"""The composed model Π∘f: a trainable base predictor f followed by a frozen denoiser Π.

Composed fine-tuning (Xie, Ma & Liang, ICML 2021; docs/method.md §1) keeps the pre-trained
denoiser Π fixed and trains only f. "Fixed" means three things here, each enforced rather than
assumed: Π's parameters do not require grad (so they are never handed to an optimizer and get no
``.grad``), Π stays in eval mode (no dropout, no BatchNorm statistics updates) even when the
composed module is put in train mode, and nothing in training writes to Π's tensors.

The base predictor is initialized from Π's weights (the paper), from any checkpoint (the
reference code starts from the standard fine-tuned model, docs/method.md §1.4), or at random
("direct").
"""
from __future__ import annotations

import copy
import os
from typing import Any, Callable, Literal, Mapping

import torch
import torch.nn as nn

from .io import CheckpointError, load_checkpoint

__all__ = ["Composed", "freeze", "unfreeze", "is_frozen", "init_base_predictor", "load_state_checked"]

InitMode = Literal["denoiser", "checkpoint", "random"]


class _StayEval:
    """Replacement ``train`` of a frozen module: whatever ``mode`` is asked, stay in eval.

    A small callable object rather than a bound method so that the frozen module still pickles
    (``torch.save(module)``, multiprocessing) and deep-copies (the copy's ``train`` refers to the
    copy).
    """

    def __init__(self, module: nn.Module):
        self.module = module

    def __call__(self, mode: bool = True) -> nn.Module:
        return nn.Module.train(self.module, False)


def freeze(module: nn.Module) -> nn.Module:
    """Freeze ``module`` in place (the denoiser Π) and return it.

    Its parameters stop requiring grad, it is put in eval mode, and its ``train()`` is replaced
    (on this instance only) by one that keeps it in eval mode, so a parent's ``.train()`` cannot
    turn dropout back on. ``copy.deepcopy`` keeps the copy frozen; :func:`unfreeze` undoes it.
    """
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    # An instance attribute shadows nn.Module.train (for this module only, not its class).
    object.__setattr__(module, "train", _StayEval(module))
    return module


def unfreeze(module: nn.Module) -> nn.Module:
    """Undo :func:`freeze`: parameters require grad again and the module is in train mode."""
    module.__dict__.pop("train", None)
    for p in module.parameters():
        p.requires_grad_(True)
    return module.train()


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of ``module`` requires grad and it is in eval mode."""
    return not module.training and not any(p.requires_grad for p in module.parameters())


class Composed(nn.Module):
    """Π∘f: ``forward(x) = denoiser(base_predictor(x))`` with the denoiser frozen.

    Args:
        base_predictor: the trainable model f.
        denoiser: the pre-trained denoiser Π; frozen in place by this constructor.

    Extra positional / keyword arguments of ``forward`` go to the base predictor. ``state_dict``
    holds both parts under ``base_predictor.*`` and ``denoiser.*``.
    """

    def __init__(self, base_predictor: nn.Module, denoiser: nn.Module):
        super().__init__()
        if base_predictor is denoiser:
            raise ValueError("base_predictor and denoiser are the same module; copy the denoiser first "
                             "(init_base_predictor('denoiser', ...))")
        shared = {id(p) for p in base_predictor.parameters()} & {id(p) for p in denoiser.parameters()}
        if shared:
            raise ValueError(f"base_predictor and denoiser share {len(shared)} parameter tensor(s); "
                             "freezing the denoiser would freeze them in the base predictor too")
        self.base_predictor = base_predictor
        self.denoiser = freeze(denoiser)

    def forward(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        return self.denoiser(self.base_predictor(x, *args, **kwargs))

    def train(self, mode: bool = True) -> "Composed":
        super().train(mode)
        self.denoiser.eval()  # Π is never trained: no dropout, no BatchNorm updates
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters that require grad (those of f); Π's are never among them."""
        return [p for p in self.parameters() if p.requires_grad]


def load_state_checked(model: nn.Module, state: Mapping[str, torch.Tensor], source: str = "state dict") -> nn.Module:
    """``model.load_state_dict(state)`` with an error naming the first offending parameter.

    Raises:
        CheckpointError: a parameter is missing, unexpected, or has a different shape.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing parameter '{missing[0]}'" + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else ""))
        if unexpected:
            parts.append(f"unexpected parameter '{unexpected[0]}'"
                         + (f" (+{len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        raise CheckpointError(f"{source}: does not match the architecture: {'; '.join(parts)}")
    for k, v in own.items():
        if not isinstance(state[k], torch.Tensor):
            raise CheckpointError(f"{source}: parameter '{k}' is not a tensor ({type(state[k]).__name__})")
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: parameter '{k}' has shape {tuple(state[k].shape)}, "
                                  f"the model expects {tuple(v.shape)}")
    model.load_state_dict(state)
    return model


def _select_state(ckpt: Mapping[str, Any], key: str | None, path: str) -> Mapping[str, torch.Tensor]:
    """Pick the model state inside a checkpoint dict.

    ``key=None``: the dict itself when it is a plain state dict, else its ``"model"`` entry (what
    :func:`composedft.train.train` writes). ``key="name"``: ``ckpt["name"]``. ``key="a.b"`` where
    ``a`` is a top-level entry: the parameters of ``ckpt["a"]`` under the prefix ``b.`` (e.g.
    ``"model.base_predictor"`` takes f out of a saved :class:`Composed`).
    """
    if key is None:
        if all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return ckpt
        if isinstance(ckpt.get("model"), Mapping):
            return ckpt["model"]
        raise CheckpointError(f"{path}: not a plain state dict and has no 'model' entry; pass key= "
                              f"(entries: {', '.join(map(str, ckpt))})")
    if key in ckpt:
        if not isinstance(ckpt[key], Mapping):
            raise CheckpointError(f"{path}: entry '{key}' is not a state dict")
        return ckpt[key]
    head, _, rest = key.partition(".")
    if rest and isinstance(ckpt.get(head), Mapping):
        prefix = rest + "."
        sub = {k[len(prefix):]: v for k, v in ckpt[head].items() if k.startswith(prefix)}
        if sub:
            return sub
        raise CheckpointError(f"{path}: entry '{head}' has no parameters under '{prefix}'")
    raise CheckpointError(f"{path}: no entry '{key}' (entries: {', '.join(map(str, ckpt))})")


def init_base_predictor(mode: InitMode, *, factory: Callable[[], nn.Module] | None = None,
                        denoiser: nn.Module | None = None, checkpoint: str | os.PathLike | None = None,
                        key: str | None = None) -> nn.Module:
    """Build the base predictor f for fine-tuning (trainable, in train mode).

    Args:
        mode: ``"denoiser"``: f starts as a copy of Π's weights (the paper's composed and
            standard fine-tuning); ``"checkpoint"``: f loads ``checkpoint`` (the reference code
            starts composed fine-tuning from the standard fine-tuned model); ``"random"``: a
            fresh ``factory()`` ("direct").
        factory: builds an untrained model of f's architecture. Needed for ``checkpoint`` and
            ``random``; with ``denoiser`` it is optional and, when given, the copy is a new
            ``factory()`` model loaded with Π's weights (so the architecture is checked);
            otherwise the copy is a ``deepcopy`` of Π.
        denoiser: Π, for ``mode="denoiser"``.
        checkpoint: a file written by :func:`composedft.io.save_checkpoint`.
        key: which state inside the checkpoint (see :func:`_select_state`).

    Returns:
        A model whose parameters all require grad and share no storage with Π.

    Raises:
        ValueError: unknown mode or a missing argument.
        CheckpointError: unreadable checkpoint, or a parameter missing / of the wrong shape
            (the message names the file and the parameter).
    """
    if mode == "denoiser":
        if denoiser is None:
            raise ValueError("init_base_predictor('denoiser') needs denoiser=")
        if factory is None:
            model = copy.deepcopy(denoiser)
        else:
            model = factory()
            ref = next(iter(denoiser.parameters()), None)
            if ref is not None:  # copy Π exactly, including its dtype (load_state_dict would cast)
                model = model.to(device=ref.device, dtype=ref.dtype) if ref.is_floating_point() else model.to(ref.device)
            load_state_checked(model, denoiser.state_dict(), "denoiser")
    elif mode == "checkpoint":
        if checkpoint is None or factory is None:
            raise ValueError("init_base_predictor('checkpoint') needs checkpoint= and factory=")
        ckpt = load_checkpoint(checkpoint)
        model = factory()
        load_state_checked(model, _select_state(ckpt, key, str(checkpoint)), str(checkpoint))
    elif mode == "random":
        if factory is None:
            raise ValueError("init_base_predictor('random') needs factory=")
        model = factory()
    else:
        raise ValueError(f"unknown init mode {mode!r} (choose denoiser, checkpoint or random)")
    return unfreeze(model)
