"""TEMPORARY minimal objectives, used only while ``composedft.objectives`` / ``estimators`` are
missing (they are being written under issue 2). Same signatures as the core's contract; delete
this file once the core lands (``seq2seq_train`` imports the core first).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def standard_nll(logits, targets, pad_id=0, label_smoothing=0.0, reduction="mean"):
    """Token NLL of ``targets`` [B,T] under ``logits`` [B,T,V], pads masked."""
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=pad_id,
                           label_smoothing=label_smoothing, reduction="none").view(targets.shape)
    mask = targets != pad_id
    if reduction == "mean":
        return loss.sum() / mask.sum().clamp(min=1)
    if reduction == "sum":
        return loss.sum()
    return (loss * mask).sum(1)


def sequence_logprob(logits, tokens, pad_id=0, length_normalize=False):
    """log p(tokens) per row, pads masked; optionally divided by the row's length."""
    lp = torch.log_softmax(logits, -1).gather(-1, tokens[..., None])[..., 0]
    mask = (tokens != pad_id).to(lp.dtype)
    out = (lp * mask).sum(-1)
    return out / mask.sum(-1).clamp(min=1) if length_normalize else out


def score_function_surrogate(logp, reward, baseline="none", scale=1.0):
    """Loss whose gradient is −scale·mean[(r − b) ∇ log p] (REINFORCE with a baseline)."""
    reward = reward.detach()
    K = reward.size(1)
    if baseline == "mean":
        b = reward.mean(1, keepdim=True)
    elif baseline == "loo":
        b = (reward.sum(1, keepdim=True) - reward) / (K - 1)
    else:
        b = torch.zeros_like(reward)
    return -scale * ((reward - b) * logp).mean()


def freeze(module):
    """Frozen denoiser: no gradients, eval mode (fallback for ``composedft.compose.freeze``)."""
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()
    module.train = lambda mode=True: module  # stays in eval mode whatever its owner does
    return module
