"""The composed loss of the code pipeline: samples, Π's reward, the score-function estimator.

Composed fine-tuning of a :class:`composedft.sequence.ComposedSequence` (paper eq. 1):
``−E_ŷ~q_f(·|x) log p_Π(y | ŷ) − λ log p_f(y | x)``, the first term by the score-function
estimator with K samples from the core's masked sampler and a baseline, Π under no-grad
(:func:`composedft.estimators.composed_sequence_loss`; docs/code-pipeline.md §3), or by the
reference code's estimator (``estimator="reference"``, docs/method.md §3.4).

How a step is kept cheap without changing the loss (docs/training-speed.md §6): each source is
encoded once for its K samples; sampling stops when every row has emitted <eos>, under a cap
right-sized to the batch (:func:`sample_cap`); a sample drawn twice for the same input is scored
once by Π and by f (:func:`distinct_samples`), and an input whose K samples are all one sequence
is not scored by f at all under the ``loo``/``mean`` baselines (its advantages sum to zero, so
it carries no gradient); the teacher-forced passes run in groups of similar length
(``ComposedObjective.buckets``). tests/test_code_composed_fast.py checks the loss and its
gradient against the plain computation in float64.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from composedft.devices import autocast
from composedft.estimators import composed_sequence_loss, reference_logprob, reference_sequence_loss
from composedft.seeding import derive_seed, torch_generator
from composedft.sequence import ComposedSequence, as_source, teacher_forcing_inputs

from .decode import PAD, greedy_decode, max_len_from_data
from .seq2seq_train import Corpus, make_batch, nll_loss

__all__ = ["ComposedObjective", "composed_loss", "samples_per_input", "sample_cap", "distinct_samples",
           "composed_loss_from_samples", "composed_val_nll"]


@dataclass(frozen=True)
class ComposedObjective:
    """Hyper-parameters of the composed loss (all explicit; cf. the reference's hidden /10).

    ``estimator="reference"`` is the released code's estimator (docs/method.md §3.4): it draws one
    sample per input and ignores ``k``, ``baseline``, ``scale`` and ``length_normalize``."""
    estimator: str = "ours"           # ours | reference (docs/method.md §3.3-3.4)
    k: int = 4                        # samples ŷ per input (ours)
    baseline: str = "loo"             # none | mean | loo
    lam: float = 1.0                  # λ, weight of the standard NLL term
    scale: float = 1.0                # weight of the score-function term
    length_normalize: bool = True     # reward = per-token log p_Π(y | ŷ)
    label_smoothing: float = 0.0      # on the λ term
    max_len: int = 256                # data-wide sample length cap (from the data, never below gold)
    cap_factor: float = 1.5           # per-batch cap = ceil(factor * longest gold) + margin (<= max_len)
    cap_margin: int = 16
    seed: int = 0                     # samples for step s use derive_seed(seed, "samples", s)
    amp: bool = True                  # bf16 autocast on CUDA (CodeConfig.amp); no effect on CPU
    buckets: int = 4                  # length groups of the teacher-forced passes (speed only)


def composed_loss(model: ComposedSequence, batch: dict, obj: ComposedObjective) -> tuple[torch.Tensor, dict[str, float]]:
    """Composed fine-tuning loss of Π∘f on one batch: draw the K samples, then
    :func:`composed_loss_from_samples`.

    The samples of step s are drawn from ``derive_seed(obj.seed, "samples", s)`` (``batch["step"]``),
    so a resumed stage draws the same ones. The cap is right-sized to the batch (``sample_cap``).
    """
    src, dev = batch["src"], batch["src"].device
    gen = torch_generator(derive_seed(obj.seed, "samples", int(batch["step"])),
                          device=dev if dev.type == "cuda" else "cpu")
    cap = sample_cap(batch["tgt_out"], obj)
    with autocast(dev, obj.amp):
        samples = model.sample(src, samples_per_input(obj), cap, generator=gen)  # [B*K, T]
    return composed_loss_from_samples(model, batch, samples, obj, cap)


def samples_per_input(obj: ComposedObjective) -> int:
    """K: ``obj.k`` for our estimator, 1 for the reference's (docs/method.md §3.4)."""
    if obj.estimator not in ("ours", "reference"):
        raise ValueError(f"unknown composed estimator {obj.estimator!r} (choose from ours, reference)")
    return 1 if obj.estimator == "reference" else obj.k


def sample_cap(tgt_out: torch.Tensor, obj: ComposedObjective) -> int:
    """Sample length cap for a batch: ``ceil(factor * longest gold in the batch) + margin``, at most
    ``obj.max_len`` (the data-wide cap). Never below the batch's gold lengths (<eos> included)."""
    longest = int((tgt_out != PAD).sum(1).max())
    return min(obj.max_len, max(longest, max_len_from_data([longest - 1], obj.cap_factor, obj.cap_margin)))


def composed_loss_from_samples(model: ComposedSequence, batch: dict, samples: torch.Tensor, obj: ComposedObjective,
                               cap: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Composed loss (paper eq. (1), README §1, minimised) given the samples ŷ of every input:

        L = − scale/(BK) Σ_{i,k} (r_ik − b_ik) log q_f(ŷ_ik | x_i)  +  λ · NLL_f(y | x),

    ŷ_ik ~ q_f(·|x_i) (rows ``i*K .. i*K+K-1`` of ``samples``, from :func:`composedft.sequence.sample`
    with cap ``cap``), q_f f's eval-mode softmax without <pad> <bos> <unk> (the distribution
    sampled, so the estimate is unbiased), reward r_ik = log p_Π(y_i | ŷ_ik) (Π frozen, no-grad)
    and b the baseline (:func:`composedft.estimators.composed_sequence_loss`). Its expected
    gradient is the gradient of −E log p_Π(y|ŷ) + λ NLL (exact test: tests/test_code_composed_exact.py).
    Each distinct sample of an input is scored once (module docstring); ``stats["distinct"]`` is
    their share of the B·K rows.
    """
    src, tgt_out, dev = batch["src"], batch["tgt_out"], batch["src"].device
    if obj.estimator == "reference":
        return _reference_loss_from_samples(model, batch, samples, obj)
    B, K = src.size(0), samples_per_input(obj)
    first, inverse = distinct_samples(samples, K)
    owner = torch.div(first, K, rounding_mode="floor")  # the input of each distinct sample
    with autocast(dev, obj.amp):  # reward: the frozen denoiser scores the gold y given each distinct ŷ
        reward = model.score(samples[first], tgt_out[owner], obj.length_normalize, buckets=obj.buckets)[inverse]
        copies = torch.bincount(inverse, minlength=first.numel())
        # K copies of one sequence: the loo/mean advantages of that input sum to exactly 0 (no gradient)
        live = copies < K if obj.baseline in ("loo", "mean") else torch.ones_like(copies, dtype=torch.bool)
        live[0] |= not bool(live.any())  # keep a (zero-weight) graph so that backward() has one
        rows = live.nonzero()[:, 0]
        lp = model.sample_logprob(src, samples[first[rows]], cap, source_index=owner[rows], buckets=obj.buckets)
    logp = torch.zeros(first.numel(), dtype=lp.dtype, device=dev).index_put((rows,), lp)[inverse]
    nll = nll_loss(model.base_predictor, batch, label_smoothing=obj.label_smoothing, amp=obj.amp)
    loss, stats = composed_sequence_loss(logp.view(B, K), reward.view(B, K), nll, lam=obj.lam,
                                         baseline=obj.baseline, scale=obj.scale)
    stats["sample_len"] = float((samples != PAD).sum(1).float().mean())
    stats["distinct"] = first.numel() / samples.size(0)
    return loss, stats


def distinct_samples(samples: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct samples of each input: ``(first, inverse)`` with ``first`` [U] the row of one
    copy of each distinct (input, sequence) and ``inverse`` [N] the position in ``first`` of each
    row's copy, so ``samples[first][inverse]`` equals ``samples`` (rows ``i*k .. i*k+k-1`` belong
    to input i; the same sequence under two inputs stays two entries: its scores differ)."""
    n = samples.size(0)
    owner = torch.arange(n // k, device=samples.device).repeat_interleave(k)
    _, inverse = torch.unique(torch.cat([owner[:, None], samples], 1), dim=0, return_inverse=True)
    u = int(inverse.max()) + 1
    first = torch.full((u,), n, dtype=torch.long, device=samples.device)
    first = first.scatter_reduce(0, inverse, torch.arange(n, device=samples.device), reduce="amin")
    return first, inverse


def _reference_loss_from_samples(model: ComposedSequence, batch: dict, samples: torch.Tensor,
                                 obj: ComposedObjective) -> tuple[torch.Tensor, dict[str, float]]:
    """The reference's loss (docs/method.md §3.4) given one sample per input (``samples`` [B, T]):

        Σ_b clamp(log p_f(ŷ_b | x_b), -50) · NLL_Π(y_b | ŷ_b) / 10 / n_tokens  +  λ · NLL_f(y | x),

    log p_f over every column of ``samples`` under f's full softmax in eval mode (pads and a
    forced <eos> count), NLL_Π summed over the gold tokens, n_tokens the batch's gold tokens
    (``batch["norm"]`` under DDP, as :func:`nll_loss`). Same sampler and Π as ours."""
    src, tgt_out, dev = batch["src"], batch["tgt_out"], batch["src"].device
    if samples.size(0) != src.size(0):
        raise ValueError(f"the reference estimator takes one sample per input: {samples.size(0)} samples "
                         f"for {src.size(0)} inputs")
    f = model.base_predictor
    was_training = f.training
    f.eval()  # the reference's generator left f in eval mode for the whole composed term
    try:
        with autocast(dev, obj.amp):
            reward = model.score(samples, tgt_out, length_normalize=False)
            logp = reference_logprob(f(src, teacher_forcing_inputs(samples)), samples)
    finally:
        f.train(was_training)
    n_tokens = float(batch["norm"]) if "norm" in batch else float((tgt_out != PAD).sum())
    nll = nll_loss(f, batch, label_smoothing=obj.label_smoothing, amp=obj.amp)
    loss, stats = reference_sequence_loss(logp, reward, nll, lam=obj.lam, n_tokens=n_tokens)
    stats["sample_len"] = float((samples != PAD).sum(1).float().mean())
    return loss, stats


@torch.no_grad()
def composed_val_nll(model: ComposedSequence, corpus: Corpus, max_len: int, batch_size: int, device,
                     amp: bool = True) -> float:
    """Per-token −log p_Π(y | ŷ) with ŷ = greedy f(x) (core: greedy f, then Π's score): a
    deterministic version of the reference's sampled ``loss_2``, used to select the composed
    model (docs/code-pipeline.md §3)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(corpus), batch_size):
        b = make_batch(corpus, range(start, min(start + batch_size, len(corpus))), device)
        with autocast(device, amp):
            yhat = greedy_decode(model.base_predictor, b["src"], max_len)
            total += float(model.score(as_source(yhat), b["tgt_out"]).sum())
        count += int((b["tgt_out"] != PAD).sum())
    model.train(was_training)
    return -total / max(count, 1)
