"""Training objectives: standard fine-tuning, composed fine-tuning (continuous), post-hoc prediction.

The objective (docs/method.md §2), written as a loss to minimize:

    L(f) = E_(x,y) [ -E_{ŷ~p_f(·|x)} log p_Π(y | ŷ)  -  λ log p_f(y | x) ].            (1)

For continuous outputs with Gaussian likelihoods, -log p is a squared error up to constants and
ŷ = f(x) is deterministic, so (1) becomes ``mse(Π(f(x)), y) + λ mse(f(x), y)`` and its gradient
flows *through* the frozen Π (pathwise). For token sequences ŷ is sampled and the first term
needs the score-function estimator of :mod:`composedft.estimators`; this module supplies the
sequence log-likelihoods both terms are made of.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["standard_mse", "composed_mse", "standard_nll", "sequence_logprob", "posthoc_predict"]

Reduction = Literal["sum", "mean_tokens", "mean", "none"]


def standard_mse(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Standard fine-tuning loss for continuous outputs: mean over all elements of (pred - y)².

    This is -log p_f(y|x) of a unit-variance Gaussian, up to an additive constant and a factor
    1/2 (the second term of (1)).
    """
    if pred.shape != y.shape:
        raise ValueError(f"standard_mse: prediction shape {tuple(pred.shape)} != target shape {tuple(y.shape)}")
    return F.mse_loss(pred, y, reduction="mean")


def composed_mse(base_predictor: nn.Module, denoiser: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 lam: float = 0.0) -> torch.Tensor:
    """Composed fine-tuning loss for continuous outputs, (1) with Gaussian likelihoods:

        mse(Π(f(x)), y) + λ · mse(f(x), y).

    The gradient reaches f's parameters through Π (pathwise, chain rule); Π is expected frozen
    (:func:`composedft.compose.freeze`), so it gets no gradient itself.
    """
    out = base_predictor(x)
    loss = standard_mse(denoiser(out), y)
    if lam != 0.0:
        loss = loss + lam * standard_mse(out, y)
    return loss


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    # bf16/fp16 logits (autocast) lose too much in a log-sum-exp over a large vocabulary.
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _check_seq_shapes(logits: torch.Tensor, tokens: torch.Tensor, name: str) -> None:
    if logits.dim() != 3 or tokens.dim() != 2 or logits.shape[:2] != tokens.shape:
        raise ValueError(f"{name}: expected logits [B,T,V] and tokens [B,T], got {tuple(logits.shape)} "
                         f"and {tuple(tokens.shape)}")


def sequence_logprob(logits: torch.Tensor, tokens: torch.Tensor, pad_id: int,
                     length_normalize: bool = False) -> torch.Tensor:
    """log p(tokens) per sequence, with pad positions masked out.

    Args:
        logits: ``[B, T, V]`` next-token logits aligned with ``tokens`` (logits[:, t] scores
            tokens[:, t]).
        tokens: ``[B, T]`` token ids, right-padded with ``pad_id``.
        pad_id: padding id; those positions contribute nothing (the reference code summed
            log p(<pad>) over the padded length, docs/reference-pitfalls.md §2.4).
        length_normalize: divide each row by its true length (its number of non-pad tokens).

    Returns:
        ``[B]``: Σ_t log p(tokens[b, t]) over non-pad t (divided by the length if asked).
    """
    _check_seq_shapes(logits, tokens, "sequence_logprob")
    lp = torch.log_softmax(_upcast(logits), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mask = tokens != pad_id
    # where(), not a multiply: a -inf log-prob at a pad position must not turn into nan.
    total = torch.where(mask, lp, torch.zeros_like(lp)).sum(-1)
    if length_normalize:
        total = total / mask.sum(-1).clamp(min=1).to(total.dtype)
    return total


def standard_nll(logits: torch.Tensor, targets: torch.Tensor, pad_id: int, label_smoothing: float = 0.0,
                 reduction: Reduction = "sum") -> torch.Tensor:
    """Standard fine-tuning loss for sequences: token cross-entropy -log p_f(y|x), pads masked.

    Args:
        logits: ``[B, T, V]``.
        targets: ``[B, T]`` gold ids, right-padded with ``pad_id``.
        pad_id: padding id (ignored positions).
        label_smoothing: ε of label smoothing (paper: 0.0 SANSTYPE, 0.05 SPoC).
        reduction: ``"sum"`` over all non-pad tokens (fairseq's, then divided by the token count
            by the trainer); ``"mean_tokens"`` (alias ``"mean"``) the sum divided by the number of
            non-pad tokens; ``"none"`` the ``[B, T]`` per-token losses, zero at pads.
    """
    _check_seq_shapes(logits, targets, "standard_nll")
    per_tok = F.cross_entropy(_upcast(logits).flatten(0, 1), targets.flatten(), ignore_index=pad_id,
                              label_smoothing=label_smoothing, reduction="none").view(targets.shape)
    mask = targets != pad_id
    per_tok = torch.where(mask, per_tok, torch.zeros_like(per_tok))
    if reduction == "none":
        return per_tok
    if reduction == "sum":
        return per_tok.sum()
    if reduction in ("mean_tokens", "mean"):
        return per_tok.sum() / mask.sum().clamp(min=1)
    raise ValueError(f"standard_nll: unknown reduction {reduction!r} (sum, mean_tokens, none)")


@torch.no_grad()
def posthoc_predict(base_predictor: nn.Module, denoiser: nn.Module, x: Any) -> Any:
    """Prediction Π(f(x)) without gradients, both models in eval mode (restored afterwards).

    This is the composed model's prediction and, applied to a standard fine-tuned f, the
    "post-hoc denoiser" baseline (docs/method.md §1.3).
    """
    modes = (base_predictor.training, denoiser.training)
    base_predictor.eval()
    denoiser.eval()
    try:
        return denoiser(base_predictor(x))
    finally:
        base_predictor.train(modes[0])
        denoiser.train(modes[1])
