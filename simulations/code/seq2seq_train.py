"""Training stages of the code pipeline: batching, the NLL and composed losses, translation.

The loop itself (AdamW, inverse-sqrt schedule, checkpoints, resume, model selection) is
:func:`composedft.train.train`; the objectives are ``composedft.objectives`` /
``composedft.estimators``; the denoiser is frozen by ``composedft.compose``. This module only
adapts them to token sequences:

* :func:`nll_loss` — standard fine-tuning / direct / denoiser pre-training, −log p(y | x).
* the composed loss lives in :mod:`simulations.code.composed` (it builds on :func:`nll_loss`).
* :func:`fit` — the core loop plus, under ``torchrun``, gradient averaging over ranks.

Batches are a pure function of (seed, step) (epoch permutations), so a resumed stage draws
exactly the batches and samples an uninterrupted one would; under DDP each rank takes its
slice of the same global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from composedft.devices import autocast
from composedft.objectives import standard_nll
from composedft.seeding import derive_seed, torch_generator
from composedft.sequence import posthoc_decode, teacher_forcing_inputs
from composedft.smart import SmartConfig, adversarial_perturbation, smoothness_term, sym_kl
from composedft.train import TrainConfig, TrainResult, train

from .decode import EOS, PAD, beam_search, greedy_decode, strip_special

__all__ = ["Corpus", "encode_corpus", "pad_batch", "BatchSampler", "corpus_lengths", "make_batch", "nll_loss",
           "smart_term", "mean_nll", "translate", "teacher_forcing_inputs", "fit"]


@dataclass(frozen=True)
class Corpus:
    """A tokenized parallel corpus: ``src[i]`` ends with <eos>; ``tgt[i]`` has no specials."""
    src: tuple[tuple[int, ...], ...]
    tgt: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.src)


def encode_corpus(tok, srcs: Sequence[str], tgts: Sequence[str]) -> Corpus:
    """Strings -> ids with the run's tokenizer (``tok.encode_text``: BPE or whitespace); the source
    gets a trailing <eos>, as fairseq's."""
    if len(srcs) != len(tgts):
        raise ValueError(f"{len(srcs)} sources but {len(tgts)} targets")
    return Corpus(tuple(tuple(tok.encode_text(s)) + (EOS,) for s in srcs),
                  tuple(tuple(tok.encode_text(t)) for t in tgts))


def pad_batch(seqs: Sequence[Sequence[int]], device="cpu") -> torch.Tensor:
    """Right-pad id sequences with <pad> into a ``[B, max_len]`` long tensor."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(width, 1)), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def make_batch(corpus: Corpus, idx: Sequence[int], device="cpu") -> dict[str, torch.Tensor]:
    """``src`` [B,S], ``tgt_in`` [B,T] (<bos> + y) and ``tgt_out`` [B,T] (y + <eos>)."""
    tgt_out = pad_batch([corpus.tgt[i] + (EOS,) for i in idx], device)
    return {"src": pad_batch([corpus.src[i] for i in idx], device), "tgt_in": teacher_forcing_inputs(tgt_out),
            "tgt_out": tgt_out}


DEFAULT_WINDOW = 100  # batches per length-sorted window (torchtext BucketIterator's pool size)


class BatchSampler:
    """Step -> example indices, without replacement within an epoch, a pure function of the step.

    Epoch ``e`` visits an arrangement of ``0..n-1`` seeded by ``(seed, e)``; step ``s`` takes
    global positions ``s*B .. s*B+B-1`` of the concatenated epochs, so every example is seen
    exactly once per epoch and a resumed run draws the batches an uninterrupted one would.

    Without ``lengths`` the arrangement is a uniform permutation. With ``lengths`` it is
    *length-bucketed* (docs/training-speed.md §1): the permutation is cut into windows of
    ``window`` batches aligned with the batch boundaries, each window is sorted by length
    (stable, so equal lengths keep their random order), and the order of the epoch's full
    batches is shuffled, so a batch holds examples of similar length (little padding) while the
    order of lengths over training stays random. Under DDP the caller slices each global batch
    by rank (see ``simulations.code.stages.batch_fn_for``, which needs the global batch for the
    token normalisation anyway).
    """

    def __init__(self, n: int, batch_size: int, seed: int, lengths: Sequence[int] | None = None,
                 window: int = DEFAULT_WINDOW):
        if n < 1:
            raise ValueError("cannot sample batches from an empty corpus")
        if batch_size < 1 or window < 1:
            raise ValueError(f"batch_size={batch_size} and window={window} must be >= 1")
        if lengths is not None and len(lengths) != n:
            raise ValueError(f"{len(lengths)} lengths for a corpus of {n} examples")
        self.n, self.batch_size, self.seed, self.window = n, batch_size, seed, window
        self.lengths = None if lengths is None else np.asarray(lengths, dtype=np.int64)
        self._perm: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._perm:
            perm = np.random.default_rng(derive_seed(self.seed, "epoch", e)).permutation(self.n)
            if self.lengths is not None:
                perm = _bucketed(perm, self.lengths, self.batch_size, self.window, (-e * self.n) % self.batch_size,
                                 np.random.default_rng(derive_seed(self.seed, "batch-order", e)))
            self._perm = {e: perm}
        return self._perm[e]

    def __call__(self, step: int) -> list[int]:
        pos = range(step * self.batch_size, (step + 1) * self.batch_size)
        return [int(self._epoch(p // self.n)[p % self.n]) for p in pos]


def _bucketed(perm: np.ndarray, lengths: np.ndarray, batch_size: int, window: int, head: int,
              rng: np.random.Generator) -> np.ndarray:
    """One epoch's length-bucketed arrangement of ``perm`` (a rearrangement of it).

    ``head`` positions at the start complete the previous epoch's last batch; after them the
    batch boundaries fall every ``batch_size`` positions. Segments (the head, then windows of
    ``window * batch_size``) are sorted by length; the full batches after the head are shuffled
    with ``rng``; a last partial batch stays at the end (it continues into the next epoch).
    """
    n, head = len(perm), min(head, len(perm))
    bounds = [0, head, *range(head + window * batch_size, n, window * batch_size), n]
    out = np.concatenate([perm[a:b][np.argsort(lengths[perm[a:b]], kind="stable")]
                          for a, b in zip(bounds[:-1], bounds[1:])])
    n_full = (n - head) // batch_size
    body = out[head:head + n_full * batch_size].reshape(n_full, batch_size)
    out[head:head + n_full * batch_size] = body[rng.permutation(n_full)].ravel()
    return out


def corpus_lengths(corpus: Corpus) -> list[int]:
    """Source + target tokens of each example: the padding cost that bucketing reduces."""
    return [len(s) + len(t) + 1 for s, t in zip(corpus.src, corpus.tgt)]


def nll_loss(model: nn.Module, batch: dict, *, label_smoothing: float = 0.0, amp: bool = True) -> torch.Tensor:
    """Per-token −log p(y | x) of the gold targets (pads masked): direct, standard, denoiser.
    ``amp``: bf16 autocast on CUDA (no effect on CPU)."""
    with autocast(batch["src"].device, amp):
        logits = model(batch["src"], batch["tgt_in"])
    if "norm" in batch:  # DDP-exact: local token sum / (global tokens / world); DDP averages ranks
        return standard_nll(logits, batch["tgt_out"], pad_id=PAD, label_smoothing=label_smoothing,
                            reduction="sum") / batch["norm"]
    return standard_nll(logits, batch["tgt_out"], pad_id=PAD, label_smoothing=label_smoothing,
                        reduction="mean")


def smart_term(model: nn.Module, batch: dict, scfg: SmartConfig, seed: int, *, amp: bool = True) -> torch.Tensor:
    """SMART's smoothness term on the source embeddings (docs/related-methods.md §1): the per-token
    symmetric KL between f's next-token distributions at the perturbed and the clean embeddings,
    averaged over real target tokens. The perturbation (random start from ``derive_seed(seed,
    step)``, ``scfg.num_steps`` normalized ascent steps, ε-box) is :func:`composedft.smart.adversarial_perturbation`
    with one example per sequence; gradients reach f through both sides, as in the paper."""
    src, tgt_in, real = batch["src"], batch["tgt_in"], (batch["tgt_out"] != PAD).to(torch.float32)
    step = int(batch.get("step", 0))
    dtype = model.src_embed.weight.dtype
    noise = torch.randn(src.shape + (model.cfg.d_model,), generator=torch_generator(derive_seed(seed, "smart", step)),
                        dtype=dtype)
    zero = torch.zeros_like(noise, device=src.device)

    def divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:  # [B, T, V] -> per sequence [B]
        return (sym_kl(p.to(dtype), q.to(dtype)) * real.to(dtype)).sum(-1)

    def fn(delta: torch.Tensor) -> torch.Tensor:
        with autocast(src.device, amp):
            return model(src, tgt_in, src_delta=delta)

    clean = fn(None)
    delta = adversarial_perturbation(fn, zero, clean, scfg, divergence=divergence, example_dims=1,
                                     noise=noise.to(src.device))
    return smoothness_term(fn, zero, clean, delta, divergence=divergence).sum() / real.sum().clamp_min(1)


@torch.no_grad()
def mean_nll(model: nn.Module, corpus: Corpus, batch_size: int, device, amp: bool = True) -> float:
    """Per-token NLL of ``corpus`` under ``model`` (eval mode): the model-selection metric."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(corpus), batch_size):
        b = make_batch(corpus, range(start, min(start + batch_size, len(corpus))), device)
        n = int((b["tgt_out"] != PAD).sum())
        total += float(nll_loss(model, b, amp=amp)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


def _decoder(beam: int) -> Callable[..., torch.Tensor]:
    return greedy_decode if beam == 1 else (lambda m, src, n, **_: beam_search(m, src, n, beam=beam))


@torch.no_grad()
def translate(model: nn.Module, srcs: Sequence[Sequence[int]], max_len: int, *, batch_size: int = 100,
              beam: int = 1, device="cpu", amp: bool = True, denoiser: nn.Module | None = None,
              progress: Callable[[int], None] | None = None):
    """Decode every source (greedy, or beam when ``beam > 1``) in length-sorted batches.

    With ``denoiser``, also Π applied to each output (core :func:`composedft.sequence.posthoc_decode`:
    Π∘f, or the post-hoc method) and returns ``(f outputs, Π outputs)``. Sorting by length keeps
    padding (and decoder steps) low; results return in input order, as id lists without specials.
    """
    order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
    out: list[list[int]] = [[] for _ in srcs]
    post: list[list[int]] = [[] for _ in srcs]
    dec = _decoder(beam)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        src = pad_batch([srcs[i] for i in idx], device)
        with autocast(device, amp):
            if denoiser is None:
                ys, zs = dec(model, src, max_len), None
            else:
                ys, zs = posthoc_decode(model, denoiser, src, max_len, decoder=dec)
        for j, i in enumerate(idx):
            out[i] = strip_special(ys[j].tolist())
            if zs is not None:
                post[i] = strip_special(zs[j].tolist())
        if progress:
            progress(len(idx))
    return out if denoiser is None else (out, post)


# ---- the training loop --------------------------------------------------------------------------

def _average_gradients_over_ranks(params: Sequence[nn.Parameter], world: int) -> list:
    """Make every backward pass end with gradients averaged over the ``world`` ranks.

    Why hooks and not a ``DistributedDataParallel`` wrapper: the composed loss calls the base
    predictor many times per step (sampling, scoring, the λ term), which DDP's one-forward /
    one-backward reducer does not allow, and a wrapper would also rename every checkpointed
    parameter (``module.*``). A post-accumulate hook all-reduces each gradient once it is final,
    so :func:`composedft.train.train` (clipping, AdamW) sees the averaged gradient on every rank
    and the ranks stay identical. Returns the hook handles (remove them after training).
    """
    import torch.distributed as dist

    def hook(p: nn.Parameter) -> None:
        dist.all_reduce(p.grad)
        p.grad.div_(world)

    return [p.register_post_accumulate_grad_hook(hook) for p in params if p.requires_grad]


def fit(model: nn.Module, loss_fn: Callable, batch_fn: Callable[[int, torch.Generator], dict], cfg: TrainConfig,
        *, params: Sequence[nn.Parameter] | None = None, eval_fn: Callable[[nn.Module], dict] | None = None,
        run_dir=None, world: int = 1) -> TrainResult:
    """:func:`composedft.train.train`, with gradients averaged over ranks when ``world > 1``.

    Under DDP every rank runs the same loop on its slice of the global batch (losses are
    normalized so that the average of the ranks' gradients is the global batch's gradient,
    see :func:`nll_loss`); each rank passes its own ``run_dir`` so that checkpoints never race.
    """
    if world <= 1:
        return train(model, loss_fn, batch_fn, cfg, params=params, eval_fn=eval_fn, run_dir=run_dir)
    from composedft.devices import resolve_device
    model.to(resolve_device(cfg.device))  # before the hooks: they belong to these parameter objects
    trainable = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    handles = _average_gradients_over_ranks(trainable, world)
    try:
        return train(model, loss_fn, batch_fn, cfg, params=trainable, eval_fn=eval_fn, run_dir=run_dir)
    finally:
        for h in handles:
            h.remove()
