"""Training stages of the code pipeline: batching, the NLL and composed losses, translation.

The loop itself (optimizer, inverse-sqrt schedule, checkpoints, resume, model selection) is
``composedft.train``; the objectives are ``composedft.objectives`` / ``composedft.estimators``.
This module only adapts them to token sequences:

* :func:`nll_loss` — standard fine-tuning / direct / denoiser pre-training, −log p(y | x).
* :func:`composed_loss` — composed fine-tuning with a frozen denoiser Π (README §1):
  ``−E_ŷ~p_f(·|x) log p_Π(y | ŷ) − λ log p_f(y | x)``; the first term by the score-function
  estimator with K samples and a leave-one-out baseline, Π under no-grad, pads masked.

Batches are a pure function of (seed, step) (epoch permutations), so a resumed stage draws
exactly the batches and samples an uninterrupted one would; under DDP each rank takes its
slice of the same global batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from composedft.devices import autocast
from composedft.seeding import derive_seed, torch_generator

try:  # the composition core's objectives (issue 2); minimal local versions until it lands
    from composedft.estimators import score_function_surrogate
    from composedft.objectives import sequence_logprob, standard_nll
except ImportError:  # pragma: no cover - exercised only while composedft is incomplete
    from ._core_fallback import score_function_surrogate, sequence_logprob, standard_nll

from .decode import BOS, EOS, PAD, beam_search, greedy_decode, sample_sequences, strip_special

__all__ = ["Corpus", "encode_corpus", "pad_batch", "BatchSampler", "make_batch", "nll_loss",
           "ComposedObjective", "composed_loss", "mean_nll", "translate", "teacher_forcing_inputs"]


@dataclass(frozen=True)
class Corpus:
    """A tokenized parallel corpus: ``src[i]`` ends with <eos>; ``tgt[i]`` has no specials."""
    src: tuple[tuple[int, ...], ...]
    tgt: tuple[tuple[int, ...], ...]

    def __len__(self) -> int:
        return len(self.src)

    def n_target_tokens(self) -> int:
        return sum(len(t) + 1 for t in self.tgt)


def encode_corpus(vocab, srcs: Sequence[str], tgts: Sequence[str]) -> Corpus:
    """Whitespace-tokenized strings -> ids (source gets a trailing <eos>, as fairseq's)."""
    if len(srcs) != len(tgts):
        raise ValueError(f"{len(srcs)} sources but {len(tgts)} targets")
    return Corpus(tuple(tuple(vocab.encode(s.split())) + (EOS,) for s in srcs),
                  tuple(tuple(vocab.encode(t.split())) for t in tgts))


def pad_batch(seqs: Sequence[Sequence[int]], device="cpu") -> torch.Tensor:
    """Right-pad id sequences with <pad> into a ``[B, max_len]`` long tensor."""
    width = max((len(s) for s in seqs), default=0)
    out = torch.full((len(seqs), max(width, 1)), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out.to(device)


def teacher_forcing_inputs(tgt_out: torch.Tensor) -> torch.Tensor:
    """Decoder inputs ``<bos> y_1 .. y_{T-1}`` for targets ``y_1 .. y_T`` (pads stay harmless)."""
    return torch.cat([torch.full_like(tgt_out[:, :1], BOS), tgt_out[:, :-1]], dim=1)


def make_batch(corpus: Corpus, idx: Sequence[int], device="cpu") -> dict[str, torch.Tensor]:
    """``src`` [B,S], ``tgt_in`` [B,T] (<bos> + y) and ``tgt_out`` [B,T] (y + <eos>)."""
    tgt_out = pad_batch([corpus.tgt[i] + (EOS,) for i in idx], device)
    return {"src": pad_batch([corpus.src[i] for i in idx], device), "tgt_in": teacher_forcing_inputs(tgt_out),
            "tgt_out": tgt_out}


class BatchSampler:
    """Step -> example indices, without replacement within an epoch, a pure function of the step.

    Epoch ``e`` visits ``permutation_e(n)`` (seeded by ``(seed, e)``); step ``s`` takes global
    positions ``s*B .. s*B+B-1`` of the concatenated epochs. Rank ``r`` of ``world`` takes every
    ``world``-th of those, so DDP ranks split one global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if n < 1:
            raise ValueError("cannot sample batches from an empty corpus")
        if batch_size % world:
            raise ValueError(f"batch_size={batch_size} is not divisible by the world size {world}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self._perm: dict[int, np.ndarray] = {}

    def _epoch(self, e: int) -> np.ndarray:
        if e not in self._perm:
            self._perm = {e: np.random.default_rng(derive_seed(self.seed, "epoch", e)).permutation(self.n)}
        return self._perm[e]

    def __call__(self, step: int) -> list[int]:
        pos = range(step * self.batch_size, (step + 1) * self.batch_size)
        out = [int(self._epoch(p // self.n)[p % self.n]) for p in pos]
        return out[self.rank::self.world]


def nll_loss(model: nn.Module, batch: dict, *, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-token −log p(y | x) of the gold targets (pads masked): direct, standard, denoiser."""
    with autocast(batch["src"].device):
        logits = model(batch["src"], batch["tgt_in"])
    if "norm" in batch:  # DDP-exact: local token sum / (global tokens / world); DDP averages ranks
        return standard_nll(logits.float(), batch["tgt_out"], pad_id=PAD, label_smoothing=label_smoothing,
                            reduction="sum") / batch["norm"]
    return standard_nll(logits.float(), batch["tgt_out"], pad_id=PAD, label_smoothing=label_smoothing,
                        reduction="mean")


@dataclass(frozen=True)
class ComposedObjective:
    """Hyper-parameters of the composed loss (all explicit; cf. the reference's hidden /10)."""
    k: int = 4                        # samples ŷ per input
    baseline: str = "loo"             # none | mean | loo
    lam: float = 1.0                  # λ, weight of the standard NLL term
    scale: float = 1.0                # weight of the score-function term
    length_normalize: bool = True     # reward = per-token log p_Π(y | ŷ)
    label_smoothing: float = 0.0      # on the λ term
    max_len: int = 256                # sample length cap (from the data, never below gold)
    seed: int = 0                     # samples for step s use derive_seed(seed, "samples", s)


def composed_loss(base_predictor: nn.Module, denoiser: nn.Module, batch: dict, obj: ComposedObjective,
                  step: int) -> tuple[torch.Tensor, dict[str, float]]:
    """Composed fine-tuning loss (paper eq. of README §1, minimised):

        L = − (1/BK) Σ_{i,k} (r_ik − b_ik) log p_f(ŷ_ik | x_i) · scale  +  λ · NLL_f(y | x),

    with ŷ_ik ~ p_f(·|x_i) (eval mode, so the log-probability is of the distribution sampled),
    reward r_ik = log p_Π(y_i | ŷ_ik) (Π frozen, no-grad, pads masked) and b the baseline. The
    surrogate's gradient is the score-function estimate of −∇ E_ŷ[log p_Π(y | ŷ)].
    """
    src, tgt_out, dev = batch["src"], batch["tgt_out"], batch["src"].device
    gen = torch_generator(derive_seed(obj.seed, "samples", step), device=dev if dev.type == "cuda" else "cpu")
    with autocast(dev):
        samples = sample_sequences(base_predictor, src, obj.k, obj.max_len, generator=gen)  # [B*K, T]
    B, K = src.size(0), obj.k
    with torch.no_grad(), autocast(dev):  # reward: the frozen denoiser scores the gold y given ŷ
        rep_out = tgt_out.repeat_interleave(K, 0)
        logits_pi = denoiser(samples, teacher_forcing_inputs(rep_out))
    reward = sequence_logprob(logits_pi.float(), rep_out, pad_id=PAD, length_normalize=obj.length_normalize).view(B, K)
    was_training = base_predictor.training
    base_predictor.eval()  # log p_f(ŷ|x) of the distribution that generated ŷ (no dropout)
    with autocast(dev):
        logits_f = base_predictor(src.repeat_interleave(K, 0), teacher_forcing_inputs(samples))
    logp = sequence_logprob(logits_f.float(), samples, pad_id=PAD, length_normalize=False).view(B, K)
    base_predictor.train(was_training)
    surrogate = score_function_surrogate(logp, reward, baseline=obj.baseline, scale=obj.scale)
    nll = nll_loss(base_predictor, batch, label_smoothing=obj.label_smoothing)
    loss = surrogate + obj.lam * nll
    stats = {"reward": float(reward.mean()), "nll": float(nll.detach()),
             "sample_len": float((samples != PAD).sum(1).float().mean())}
    return loss, stats


@torch.no_grad()
def mean_nll(model: nn.Module, corpus: Corpus, batch_size: int, device) -> float:
    """Per-token NLL of ``corpus`` under ``model`` (eval mode): the model-selection metric."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(corpus), batch_size):
        b = make_batch(corpus, range(start, min(start + batch_size, len(corpus))), device)
        n = int((b["tgt_out"] != PAD).sum())
        total += float(nll_loss(model, b)) * n
        count += n
    model.train(was_training)
    return total / max(count, 1)


@torch.no_grad()
def composed_val_nll(base_predictor: nn.Module, denoiser: nn.Module, corpus: Corpus, max_len: int,
                     batch_size: int, device) -> float:
    """Per-token −log p_Π(y | ŷ) with ŷ = greedy f(x): a deterministic version of the reference's
    sampled ``loss_2``, used to select the composed model (paper-notes §2.2, §6 item 5)."""
    ys = translate(base_predictor, corpus.src, max_len, batch_size=batch_size, device=device)
    denoised_input = Corpus(tuple(tuple(y) + (EOS,) for y in ys), corpus.tgt)
    return mean_nll(denoiser, denoised_input, batch_size, device)


@torch.no_grad()
def translate(model: nn.Module, srcs: Sequence[Sequence[int]], max_len: int, *, batch_size: int = 100,
              beam: int = 1, device="cpu", progress: Callable[[int], None] | None = None) -> list[list[int]]:
    """Decode every source (greedy, or beam when ``beam > 1``) in length-sorted batches.

    Sorting by length keeps padding (and decoder steps) low; results return in input order.
    """
    order = sorted(range(len(srcs)), key=lambda i: len(srcs[i]))
    out: list[list[int]] = [[] for _ in srcs]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        src = pad_batch([srcs[i] for i in idx], device)
        with autocast(device):
            ys = greedy_decode(model, src, max_len) if beam == 1 else beam_search(model, src, max_len, beam=beam)
        for i, row in zip(idx, ys.tolist()):
            out[i] = strip_special(row)
        if progress:
            progress(len(idx))
    return out


# ---- the training loop --------------------------------------------------------------------------

@dataclass(frozen=True)
class FitConfig:
    """One training stage: Adam(0.9, 0.98), linear warm-up then inverse-sqrt decay (fairseq)."""
    steps: int
    lr: float
    warmup: int
    weight_decay: float = 1e-4
    grad_clip: float = 0.0            # 0 = off
    eval_every: int = 200             # validation + checkpoint period (steps)
    log_every: int = 50


def inverse_sqrt_lr(step: int, lr: float, warmup: int) -> float:
    """fairseq ``inverse_sqrt``: lr·s/w during warm-up, then lr·sqrt(w/s) (s counted from 1)."""
    s, w = step + 1, max(warmup, 1)
    return lr * min(s / w, (w / s) ** 0.5)


def fit(model: nn.Module, loss_fn: Callable, batch_fn: Callable[[int], dict], fc: FitConfig, *,
        params: Sequence[nn.Parameter] | None = None, eval_fn: Callable[[], float] | None = None,
        run_dir=None, log: Callable[[str], None] = print, is_main: bool = True) -> dict:
    """Train ``model`` for ``fc.steps`` steps; keep the weights with the lowest ``eval_fn``.

    ``loss_fn(model, batch, step) -> (loss, stats)``; ``batch_fn(step) -> batch`` must be a pure
    function of the step (see :class:`BatchSampler`), so that resuming from ``run_dir/last.pt``
    (weights, optimizer, step, RNG state, best so far) continues exactly the uninterrupted run.
    ``model`` may be a DDP wrapper; checkpoints hold the unwrapped module's weights.

    Returns ``{"best_metric", "best_step", "tokens", "train_s"}`` and leaves the best weights in
    the model (the last ones when ``eval_fn`` is None).
    """
    from pathlib import Path

    from composedft.io import load_checkpoint, save_checkpoint

    core = getattr(model, "module", model)
    params = list(params) if params is not None else [p for p in core.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=fc.lr, betas=(0.9, 0.98), eps=1e-8, weight_decay=fc.weight_decay)
    state = {"step": 0, "best_metric": float("inf"), "best_step": -1, "tokens": 0, "train_s": 0.0}
    best = None
    last = Path(run_dir) / "last.pt" if run_dir else None
    if last is not None and last.exists():
        ck = load_checkpoint(last)
        core.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        torch.set_rng_state(ck["rng"])
        state.update(ck["state"])
        best = ck.get("best")
        log(f"  resumed from {last} at step {state['step']}")

    def checkpoint():
        if last is not None and is_main:
            save_checkpoint(last, {"model": core.state_dict(), "optimizer": opt.state_dict(),
                                   "rng": torch.get_rng_state(), "state": dict(state), "best": best})

    model.train()
    t0 = time.perf_counter() - state["train_s"]
    while state["step"] < fc.steps:
        step = state["step"]
        for g in opt.param_groups:
            g["lr"] = inverse_sqrt_lr(step, fc.lr, fc.warmup)
        batch = batch_fn(step)
        loss, stats = loss_fn(model, batch, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if fc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, fc.grad_clip)
        opt.step()
        state["step"] = step + 1
        state["tokens"] += int(batch.get("n_tokens", 0))
        if state["step"] % fc.log_every == 0 or state["step"] == fc.steps:
            extra = " ".join(f"{k}={v:.3f}" for k, v in stats.items())
            log(f"  step {state['step']:>6}/{fc.steps} loss={float(loss.detach()):.4f} {extra}")
        if state["step"] % fc.eval_every == 0 or state["step"] == fc.steps:
            if eval_fn is not None:
                metric = float(eval_fn())
                if metric < state["best_metric"]:
                    state["best_metric"], state["best_step"] = metric, state["step"]
                    best = {k: v.detach().clone() for k, v in core.state_dict().items()}
                log(f"  step {state['step']:>6} val={metric:.4f} (best {state['best_metric']:.4f} @ {state['best_step']})")
            state["train_s"] = time.perf_counter() - t0
            checkpoint()
    state["train_s"] = time.perf_counter() - t0
    if best is not None:
        core.load_state_dict(best)
    return state
