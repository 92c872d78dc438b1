"""Composition Π∘f for token models: decoding, sampling, scoring and the post-hoc method.

:class:`composedft.compose.Composed` composes continuous predictors, ``Π(f(x))``. For token
sequences f returns logits and Π takes tokens, so the composition is an algorithm over a pair of
encoder-decoder models (see docs/code-pipeline.md §2):

* decoding: ŷ = greedy f(x), then greedy Π(ŷ), batched (:meth:`ComposedSequence.decode`; with a
  standard fine-tuned f it is the post-hoc method, :func:`posthoc_decode`);
* sampling: ŷ ~ q_f(·|x), the *sampler's* distribution, i.e. f's softmax with the specials that
  must never appear in an output (``<pad> <bos> <unk>``) masked out, ancestral, capped at
  ``max_len`` tokens; a capped sample gets a trailing ``<eos>`` so Π sees the format it was
  pre-trained on (:func:`sample`);
* scoring: log q_f(ŷ|x) of the sampled tokens (differentiable; the forced ``<eos>`` is not a
  sampled token and is excluded) and log p_Π(y | ŷ) (:meth:`ComposedSequence.score`).

The score-function estimator (:mod:`composedft.estimators`) is unbiased only if the log-prob it
differentiates is that of the distribution actually sampled; :func:`sampled_logprob` applies the
same mask as :func:`sample` for that reason.

A token model here is any module with ``encode(src) -> (memory, mask)``, ``decode(tgt_in,
memory, mask) -> logits [B, T, V]``, ``init_cache(src)`` and ``decode_step(tokens, cache) ->
logits [B, V]`` (``simulations.code.model.Seq2SeqTransformer``). Sources are right-padded
``[B, S]`` id tensors ending with ``<eos>``; outputs are ``[B, T]`` without ``<bos>``: a row ends
with ``<eos>`` followed by ``<pad>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn

from .compose import Composed

__all__ = ["Specials", "SPECIALS", "teacher_forcing_inputs", "mask_logits", "autoregress", "greedy_decode",
           "sample", "sample_categorical", "extent", "length_buckets", "sampled_logprob", "as_source", "target_logprob",
           "posthoc_decode", "ComposedSequence"]


@dataclass(frozen=True)
class Specials:
    """Ids of the special tokens; ``never_sampled`` are masked in every sampled distribution."""
    pad: int = 0
    bos: int = 1
    eos: int = 2
    unk: int = 3

    @property
    def never_sampled(self) -> tuple[int, ...]:
        return (self.pad, self.bos, self.unk)


SPECIALS = Specials()


def teacher_forcing_inputs(tgt_out: torch.Tensor, bos: int = SPECIALS.bos) -> torch.Tensor:
    """Decoder inputs ``<bos> y_1 .. y_{T-1}`` for targets ``y_1 .. y_T`` (pads stay harmless)."""
    return torch.cat([torch.full_like(tgt_out[:, :1], bos), tgt_out[:, :-1]], dim=1)


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    # bf16/fp16 logits (autocast) lose too much in a log-sum-exp; float64 stays float64 (exact tests)
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def mask_logits(logits: torch.Tensor, ids: tuple[int, ...]) -> torch.Tensor:
    """``logits`` with the ``ids`` columns set to -inf (their probability becomes exactly 0)."""
    out = logits.clone()
    out[..., list(ids)] = -float("inf")
    return out


def autoregress(model: nn.Module, src: torch.Tensor, max_len: int, pick: Callable[[torch.Tensor], torch.Tensor],
                *, specials: Specials = SPECIALS, use_cache: bool = True, repeat: int = 1) -> torch.Tensor:
    """Decode ``src`` [B, S] token by token in eval mode; ``pick`` maps logits [N, V] to tokens [N].

    ``repeat``: decode each source ``repeat`` times (rows ``i*repeat .. i*repeat+repeat-1``); the
    encoder still runs once per source. ``use_cache=False`` re-runs the decoder over the whole
    prefix each step (the reference the KV cache is checked against). Stops as soon as every row
    has emitted ``<eos>``; rows that did hold ``<pad>`` afterwards. Finished rows are dropped from
    the batch once they are a quarter of it (each row's tokens depend only on its own prefix, so
    this changes no output; it saves the work of rows that are done). The mode is restored.
    """
    was_training = model.training
    model.eval()
    memory, mask = model.encode(src)
    if repeat > 1:
        memory, mask = memory.repeat_interleave(repeat, 0), mask.repeat_interleave(repeat, 0)
    B, dev = memory.size(0), src.device
    out = torch.full((B, max_len), specials.pad, dtype=src.dtype, device=dev)
    rows = torch.arange(B, device=dev)  # batch row -> output row
    done = torch.zeros(B, dtype=torch.bool, device=dev)
    tok = torch.full((B,), specials.bos, dtype=src.dtype, device=dev)
    cache = model.cache_from_memory(memory, mask) if use_cache else None
    width = max_len
    for t in range(max_len):
        if use_cache:
            logits = model.decode_step(tok, cache)
        else:
            prefix = torch.cat([torch.full((rows.numel(), 1), specials.bos, dtype=src.dtype, device=dev),
                                out[rows, :t]], 1)
            logits = model.decode(prefix, memory, mask)[:, -1]
        tok = pick(logits)
        live = ~done
        out[rows[live], t] = tok[live]
        done = done | (tok == specials.eos)
        if bool(done.all()):
            width = t + 1
            break
        if 4 * int(done.sum()) >= rows.numel():  # compact: keep the unfinished rows only
            keep = (~done).nonzero()[:, 0]
            rows, tok, done = rows[keep], tok[keep], done[keep]
            if use_cache:
                cache = cache.select(keep)
            else:
                memory, mask = memory.index_select(0, keep), mask.index_select(0, keep)
    model.train(was_training)
    return out[:, :width]


@torch.no_grad()
def greedy_decode(model: nn.Module, src: torch.Tensor, max_len: int, *, specials: Specials = SPECIALS,
                  use_cache: bool = True) -> torch.Tensor:
    """Greedy ``argmax`` decoding of ``src`` [B, S] (rows may run to ``max_len`` without <eos>).

    The argmax is over the tokens :func:`sample` may draw (``specials.never_sampled`` masked): a
    program never holds <pad>, <bos> or <unk>, and a <pad> must not stand in for <eos>."""
    return autoregress(model, src, max_len, lambda logits: mask_logits(logits, specials.never_sampled).argmax(-1),
                       specials=specials, use_cache=use_cache)


@torch.no_grad()
def sample(model: nn.Module, src: torch.Tensor, k: int, max_len: int, *, generator: torch.Generator | None = None,
           specials: Specials = SPECIALS, temperature: float = 1.0) -> torch.Tensor:
    """``k`` samples ŷ ~ q_f(·|x) per source (ancestral, cached, eval mode: no dropout).

    q_f is f's softmax with ``specials.never_sampled`` masked. Returns ``[B*k, T]`` (rows of input
    ``i`` are ``i*k .. i*k+k-1``); a row that reached ``max_len`` sampled tokens without <eos> gets
    <eos> appended at column ``max_len`` (not a sampled token: :func:`sampled_logprob` skips it).
    Each token is drawn by :func:`sample_categorical` (one uniform per row and step), so the
    samples are a deterministic function of ``generator``'s state.
    """
    banned = specials.never_sampled
    bias: list[torch.Tensor] = []  # additive -inf mask, built once per call (one op per step, not a clone)

    def pick(logits: torch.Tensor) -> torch.Tensor:
        if not bias:
            bias.append(mask_logits(torch.zeros(logits.size(-1), device=logits.device), banned))
        z = logits.float() + bias[0]
        return sample_categorical(torch.softmax(z if temperature == 1.0 else z / temperature, dim=-1),
                                  generator=generator)

    out = autoregress(model, src, max_len, pick, specials=specials, repeat=k)
    return as_source(out, specials)


def sample_categorical(probs: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """One draw per row of ``probs`` [N, V] by inversion: the first j with cdf_j > u · cdf_V.

    One uniform u per row instead of ``torch.multinomial``'s V exponentials (its cost dominated a
    sampling step, docs/training-speed.md §6). The cumulative sum is in float64 so rounding
    cannot give a zero-probability token a sliver of [0, 1): a token with p_j = 0 has
    cdf_j = cdf_{j-1} and is never the first to exceed u · cdf_V (``right=True`` also excludes
    j = 0 when u = 0). Only if u · cdf_V rounds up to cdf_V (probability <= 2^-53) is the last
    column returned.
    """
    cdf = probs.double().cumsum(-1)
    u = torch.rand(probs.size(0), 1, dtype=torch.float64, device=probs.device, generator=generator)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True)
    return idx[:, 0].clamp_(max=probs.size(-1) - 1)


def extent(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Per row of ``x`` [N, T], one past its last non-pad column (0 for an all-pad row): the width
    a row can be trimmed to without losing a token (a count of non-pads could cut a row that
    holds a pad mid-sequence, e.g. a greedy output)."""
    cols = torch.arange(1, x.size(1) + 1, device=x.device)
    return torch.where(x != pad, cols, torch.zeros_like(cols)).amax(1) if x.size(1) else x.new_zeros(x.size(0))


def length_buckets(lengths: torch.Tensor, buckets: int) -> list[torch.Tensor]:
    """Row indices grouped by length: ``lengths`` [N] sorted (stable), cut into ``buckets``
    nearly equal groups (fewer if N is small). Each group is padded only to its own longest row,
    so a batch of samples of uneven lengths costs less than one padded to the longest."""
    order = torch.argsort(lengths, stable=True)
    return [g for g in order.chunk(max(1, min(buckets, lengths.numel())))]


def as_source(y: torch.Tensor, specials: Specials = SPECIALS) -> torch.Tensor:
    """Outputs ``[B, T]`` in the source format Π was trained on: every row ends with <eos>.

    Rows that never emitted <eos> (cut at the cap) get one appended; other rows gain a <pad>.
    """
    has_eos = (y == specials.eos).any(dim=1)
    if bool(has_eos.all()):
        return y
    extra = torch.where(has_eos, torch.full_like(y[:, 0], specials.pad), torch.full_like(y[:, 0], specials.eos))
    return torch.cat([y, extra[:, None]], dim=1)


def sampled_logprob(model: nn.Module, src: torch.Tensor, samples: torch.Tensor, max_len: int, *,
                    specials: Specials = SPECIALS, source_index: torch.Tensor | None = None,
                    buckets: int = 1) -> torch.Tensor:
    """log q_f(ŷ | x) per sample ``[N]``, differentiable in f's weights.

    ``samples`` come from :func:`sample`: row n belongs to source ``source_index[n]`` (default:
    ``k = N // B`` consecutive rows per source). The encoder runs once per source; the decoder
    scores the samples teacher-forced under the sampler's mask, in ``buckets`` groups of similar
    length (:func:`length_buckets`; each row's value does not depend on its group: pads come
    after a row's tokens and the decoder is causal). Only the first ``max_len`` columns are
    sampled tokens (pads excluded). Runs in the model's current mode: call it in eval mode to
    differentiate the distribution sampled.
    """
    if source_index is None:
        k = samples.size(0) // src.size(0)
        source_index = torch.arange(src.size(0), device=src.device).repeat_interleave(k)
    toks = samples[:, :max_len]
    memory, mask = model.encode(src)
    lengths = extent(toks, specials.pad)
    groups = length_buckets(lengths, buckets)
    parts = []
    for rows in groups:
        t = toks[rows, :max(1, int(lengths[rows].max()))]
        at = source_index[rows]
        logits = model.decode(teacher_forcing_inputs(t, specials.bos), memory[at], mask[at])
        logp = torch.log_softmax(mask_logits(_upcast(logits), specials.never_sampled), dim=-1)
        lp = logp.gather(-1, t.unsqueeze(-1)).squeeze(-1)
        parts.append(torch.where(t != specials.pad, lp, torch.zeros_like(lp)).sum(-1))
    return torch.cat(parts)[torch.argsort(torch.cat(groups))]  # back to the input's row order


def target_logprob(model: nn.Module, src: torch.Tensor, tgt_out: torch.Tensor, *, specials: Specials = SPECIALS,
                   length_normalize: bool = False, buckets: int = 1) -> torch.Tensor:
    """log p(y | src) per row ``[B]`` under the full softmax, ``tgt_out`` = y + <eos>, pads masked.

    ``buckets > 1`` runs rows of similar source + target length together, each group trimmed to
    its own longest source and target (:func:`length_buckets`; the encoder masks source pads and
    target pads come after the tokens scored, so no row's value depends on its group)."""
    src_len, tgt_len = extent(src, specials.pad), extent(tgt_out, specials.pad)
    groups = length_buckets(src_len + tgt_len, buckets)
    parts = []
    for rows in groups:
        s_, y = src[rows, :max(1, int(src_len[rows].max()))], tgt_out[rows, :max(1, int(tgt_len[rows].max()))]
        logits = _upcast(model(s_, teacher_forcing_inputs(y, specials.bos)))
        lp = torch.log_softmax(logits, dim=-1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        real = y != specials.pad
        total = torch.where(real, lp, torch.zeros_like(lp)).sum(-1)
        parts.append(total / real.sum(-1).clamp(min=1).to(total.dtype) if length_normalize else total)
    return torch.cat(parts)[torch.argsort(torch.cat(groups))]


@torch.no_grad()
def posthoc_decode(base_predictor: nn.Module, denoiser: nn.Module, src: torch.Tensor, max_len: int, *,
                   specials: Specials = SPECIALS, decoder: Callable[..., torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ŷ, Π(ŷ)): greedy f, then greedy Π on ŷ (capped rows get <eos>), one batch each.

    With the composed f this is Π∘f's prediction; with a standard fine-tuned f it is the
    post-hoc denoiser baseline (paper §4.4). ``decoder(model, src, max_len)`` replaces greedy
    decoding (e.g. beam search) in both steps.
    """
    if decoder is None:
        decoder = lambda m, s, n: greedy_decode(m, s, n, specials=specials)  # noqa: E731
    yhat = decoder(base_predictor, src, max_len)
    return yhat, decoder(denoiser, as_source(yhat, specials), max_len)


class ComposedSequence(Composed):
    """Π∘f for token models, with Π frozen by :class:`composedft.compose.Composed`.

    ``forward`` is not defined for tokens (f's logits are not Π's input); use :meth:`decode`,
    :meth:`sample`, :meth:`sample_logprob` and :meth:`score`.
    """

    def __init__(self, base_predictor: nn.Module, denoiser: nn.Module, specials: Specials = SPECIALS):
        super().__init__(base_predictor, denoiser)
        self.specials = specials

    def forward(self, *args, **kwargs):
        raise TypeError("ComposedSequence has no forward(): use decode(), sample(), sample_logprob() or score()")

    def decode(self, src: torch.Tensor, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy f then greedy Π (see :func:`posthoc_decode`)."""
        return posthoc_decode(self.base_predictor, self.denoiser, src, max_len, specials=self.specials)

    def sample(self, src: torch.Tensor, k: int, max_len: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` samples per source from q_f (see :func:`sample`)."""
        return sample(self.base_predictor, src, k, max_len, generator=generator, specials=self.specials)

    def sample_logprob(self, src: torch.Tensor, samples: torch.Tensor, max_len: int, *,
                       source_index: torch.Tensor | None = None, buckets: int = 1) -> torch.Tensor:
        """log q_f(ŷ|x) of ``samples`` in eval mode (the sampled distribution), with grad
        (see :func:`sampled_logprob`)."""
        f = self.base_predictor
        was_training = f.training
        f.eval()
        try:
            return sampled_logprob(f, src, samples, max_len, specials=self.specials, source_index=source_index,
                                   buckets=buckets)
        finally:
            f.train(was_training)

    @torch.no_grad()
    def score(self, samples: torch.Tensor, tgt_out: torch.Tensor, length_normalize: bool = False, *,
              buckets: int = 1) -> torch.Tensor:
        """log p_Π(y | ŷ) per row: ``samples`` [N, T] in source format, ``tgt_out`` [N, T'] = y + <eos>."""
        return target_logprob(self.denoiser, samples, tgt_out, specials=self.specials,
                              length_normalize=length_normalize, buckets=buckets)
