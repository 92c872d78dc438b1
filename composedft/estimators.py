"""Score-function (REINFORCE) estimator for the composed term of discrete outputs.

For token sequences the composed term E_{ŷ~p_f(·|x)} log p_Π(y | ŷ) cannot be differentiated
through ŷ. Its gradient is (Williams, 1992)

    ∇_θ E_ŷ[r(ŷ)] = E_ŷ[(r(ŷ) - b) ∇_θ log p_θ(ŷ | x)],    r(ŷ) = log p_Π(y | ŷ),        (2)

for any baseline b that does not depend on ŷ. With K samples ŷ_1..ŷ_K per input:

* ``"none"``: b = 0. Unbiased, high variance (r is a log-probability, far from 0).
* ``"loo"``: b_k = mean_{j≠k} r_j (leave-one-out; Kool et al., 2019). b_k is independent of ŷ_k,
  so the estimate stays unbiased, and it removes most of the variance. Needs K >= 2.
* ``"mean"``: b = mean_j r_j, *including* r_k. Since r_k - mean_j r_j = (K-1)/K (r_k - b_k^loo),
  this is exactly (K-1)/K times the leave-one-out estimate, i.e. biased towards zero by the
  factor (K-1)/K (equivalently: the gradient is that of a smaller learning rate). Kept because it
  is common; prefer ``"loo"``.

What the reference code did instead (docs/method.md §3.3, docs/reference-pitfalls.md §2): one sample, no baseline, a hidden
``/10``, a clamp at -50 that zeroes gradients, pads counted in log p(ŷ). Here every scale is an
argument, nothing is clamped, and the reward is detached (Π gets no gradient). That estimator
is kept, as the ``reference`` choice, for comparisons only (:func:`reference_logprob`,
:func:`reference_surrogate`; docs/method.md §3.4).
"""
from __future__ import annotations

from typing import Literal

import torch

__all__ = ["BASELINES", "ESTIMATORS", "REFERENCE_CLAMP", "REFERENCE_DIVISOR", "score_function_surrogate",
           "baseline_values", "composed_sequence_loss", "reference_logprob", "reference_surrogate",
           "reference_sequence_loss"]

Baseline = Literal["none", "mean", "loo"]
BASELINES = ("none", "mean", "loo")
Estimator = Literal["ours", "reference"]
ESTIMATORS = ("ours", "reference")
REFERENCE_CLAMP = -50.0    # the reference's clamp(min=-50) on log p(ŷ) (docs/method.md §3.4)
REFERENCE_DIVISOR = 10.0   # the reference's hidden "/ 10.0" of the surrogate (docs/method.md §3.4)


def baseline_values(reward: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """The baseline b ``[B, K]`` for rewards ``[B, K]`` (see the module docstring)."""
    K = reward.size(1)
    if baseline == "none":
        return torch.zeros_like(reward)
    if baseline not in ("mean", "loo"):
        raise ValueError(f"unknown baseline {baseline!r} (choose from {', '.join(BASELINES)})")
    if K < 2:
        raise ValueError(f"baseline '{baseline}' needs K >= 2 samples per input, got K={K} "
                         "(with one sample it would cancel the reward)")
    total = reward.sum(dim=1, keepdim=True)
    if baseline == "mean":
        return (total / K).expand_as(reward)
    return (total - reward) / (K - 1)


def score_function_surrogate(logp: torch.Tensor, reward: torch.Tensor, baseline: Baseline = "loo",
                             scale: float = 1.0) -> torch.Tensor:
    """A scalar whose gradient is the score-function estimate of ``-scale · ∇ E_ŷ[r]``.

        S = -scale · (1/(B K)) Σ_{b,k} (r_bk - baseline_bk) · log p_θ(ŷ_bk | x_b),

    so ∇S = -scale · mean_b [ (1/K) Σ_k (r_bk - baseline_bk) ∇ log p_θ(ŷ_bk | x_b) ], an unbiased
    estimate of -scale · mean_b ∇ E_ŷ[r_b] (eq. 2) for ``"none"`` and ``"loo"``; ``"mean"`` gives
    (K-1)/K of it. Minimizing S therefore maximizes the expected reward. The *value* of S is not
    the objective; log the mean reward instead.

    Args:
        logp: ``[B, K]`` log p_θ(ŷ_bk | x_b) of the sampled outputs, differentiable in θ (pads
            masked, *not* length-normalized: (2) needs the log-probability of the sample itself).
        reward: ``[B, K]`` r_bk = log p_Π(y_b | ŷ_bk); detached here (treated as a constant).
        baseline: ``"none"``, ``"mean"`` or ``"loo"``.
        scale: the weight of the composed term (explicit; the reference hid a /10).

    Raises:
        ValueError: shapes differ or are not 2-D, a non-finite reward, or K < 2 with a baseline.
    """
    if logp.dim() != 2 or logp.shape != reward.shape:
        raise ValueError(f"score_function_surrogate: logp and reward must both be [B, K], got "
                         f"{tuple(logp.shape)} and {tuple(reward.shape)}")
    reward = reward.detach().to(logp.dtype)
    if not bool(torch.isfinite(reward).all()):
        raise ValueError("score_function_surrogate: non-finite reward (log p_Π(y|ŷ) = -inf or nan); "
                         "compute the denoiser's log-probabilities in float32 or higher")
    advantage = reward - baseline_values(reward, baseline)
    return -scale * (advantage * logp).mean()


def composed_sequence_loss(logp: torch.Tensor, reward: torch.Tensor, nll: torch.Tensor | None = None, *,
                           lam: float = 0.0, baseline: Baseline = "loo",
                           scale: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Composed fine-tuning loss for sequences, eq. (1) of :mod:`composedft.objectives`:

        S(logp, reward; baseline, scale)  +  λ · nll,

    with S the score-function surrogate of the composed term (:func:`score_function_surrogate`) and ``nll`` the standard term
    -log p_f(y|x) (e.g. :func:`composedft.objectives.standard_nll`, reduction of the caller's
    choice). Sampling ŷ and scoring it with Π (under ``torch.no_grad()``) is model-specific and
    stays with the caller.

    Returns:
        The loss and float statistics: ``reward`` (mean log p_Π(y|ŷ), the quantity being
        maximized), ``reward_std`` (within-input spread), ``nll`` (when given).
    """
    loss = score_function_surrogate(logp, reward, baseline=baseline, scale=scale)
    r = reward.detach().float()
    stats = {"reward": float(r.mean()),
             "reward_std": float(r.std(dim=1).mean()) if r.size(1) > 1 else 0.0}
    return _plus_nll(loss, stats, nll, lam, "composed_sequence_loss")


def _plus_nll(loss: torch.Tensor, stats: dict[str, float], nll: torch.Tensor | None, lam: float,
              who: str) -> tuple[torch.Tensor, dict[str, float]]:
    """Add λ · nll (paper eq. 1's standard term) to a score-function loss and report the NLL."""
    if nll is not None:
        stats["nll"] = float(nll.detach())
        if lam != 0.0:
            loss = loss + lam * nll
    elif lam != 0.0:
        raise ValueError(f"{who}: lam != 0 needs nll=")
    return loss, stats


# ---- the released reference code's estimator (docs/method.md §3.4), for comparisons only ----------

def reference_logprob(logits: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """The reference's log p_θ(ŷ | x) ``[N]``: clamped, pads counted (docs/method.md §3.4, steps 3-4).

        clamp( Σ_{t < T} log softmax(logits[n, t])[ŷ_nt],  min = -50 )

    The sum runs over *every* column of the padded batch of samples, so positions after <eos>
    add log p(<pad>) under f's full (unmasked) softmax, and the value depends on the other
    samples' lengths. Below -50 the clamp makes the gradient exactly zero.

    Args:
        logits: ``[N, T, V]`` f's teacher-forced logits aligned with ``samples`` (logits[:, t]
            scores samples[:, t]).
        samples: ``[N, T]`` the sampled ids, right-padded.
    """
    if logits.dim() != 3 or logits.shape[:2] != samples.shape:
        raise ValueError(f"reference_logprob: logits [N, T, V] and samples [N, T] do not match: "
                         f"{tuple(logits.shape)} and {tuple(samples.shape)}")
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    lp = torch.log_softmax(logits, dim=-1).gather(-1, samples.unsqueeze(-1)).squeeze(-1)
    return lp.sum(-1).clamp(min=REFERENCE_CLAMP)


def reference_surrogate(logp: torch.Tensor, reward: torch.Tensor, *, n_tokens: float) -> torch.Tensor:
    """The reference's surrogate (docs/method.md §3.4, steps 6-7), one sample per input:

        S = Σ_b logp_b · NLL_Π,b / 10 / n_tokens,      NLL_Π,b = -reward_b,

    so ∇S = -(1/(10 n_tokens)) Σ_b r_b ∇ logp_b: no baseline, the hidden /10, and fairseq's
    division of the whole loss by the batch's gold target tokens (``sample_size``).

    Args:
        logp: ``[B]`` :func:`reference_logprob` of each input's single sample (differentiable).
        reward: ``[B]`` r_b = log p_Π(y_b | ŷ_b) summed over the gold tokens; detached here.
        n_tokens: the normaliser (the batch's gold target tokens, <eos> included).

    Raises:
        ValueError: shapes differ or are not 1-D, a non-finite reward, or ``n_tokens <= 0``.
    """
    if logp.dim() != 1 or logp.shape != reward.shape:
        raise ValueError(f"reference_surrogate: logp and reward must both be [B], got "
                         f"{tuple(logp.shape)} and {tuple(reward.shape)}")
    if not n_tokens > 0:
        raise ValueError(f"reference_surrogate: n_tokens must be > 0, got {n_tokens}")
    reward = reward.detach().to(logp.dtype)
    if not bool(torch.isfinite(reward).all()):
        raise ValueError("reference_surrogate: non-finite reward (log p_Π(y|ŷ) = -inf or nan)")
    return (logp * -reward).sum() / (REFERENCE_DIVISOR * n_tokens)


def reference_sequence_loss(logp: torch.Tensor, reward: torch.Tensor, nll: torch.Tensor | None = None, *,
                            lam: float = 0.0, n_tokens: float) -> tuple[torch.Tensor, dict[str, float]]:
    """The reference's total loss, :func:`reference_surrogate` + λ · nll, with the statistics of
    :func:`composed_sequence_loss` (``reward_std`` is 0: one sample per input). ``nll`` is the
    per-token NLL of the gold (the reference's CE sum over the same ``n_tokens``)."""
    loss = reference_surrogate(logp, reward, n_tokens=n_tokens)
    stats = {"reward": float(reward.detach().float().mean()), "reward_std": 0.0,
             "clamped": float((logp.detach() <= REFERENCE_CLAMP).float().mean())}
    return _plus_nll(loss, stats, nll, lam, "reference_sequence_loss")
