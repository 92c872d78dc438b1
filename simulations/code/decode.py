"""Batched decoding: greedy (cached and uncached), sampling of K sequences, optional beam search.

Every function takes ``max_len`` explicitly: the pipeline derives it from the data
(:func:`max_len_from_data`), so no fixed cap can cut gold programs (the reference capped at 200
tokens, which made 52% of SPoC TestP gold programs impossible; paper-notes §4.2).

Outputs are token tensors ``[B, T]`` without <bos>; a row ends with <eos> followed by <pad>, or
runs to ``max_len`` without <eos> when the model never stops.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch

from .model import Seq2SeqTransformer

__all__ = ["greedy_decode", "sample_sequences", "beam_search", "max_len_from_data", "strip_special",
           "BOS", "EOS", "PAD"]

PAD, BOS, EOS = 0, 1, 2


def max_len_from_data(target_lengths: Iterable[int], factor: float = 1.5, margin: int = 16) -> int:
    """Output cap from the data: ``ceil(factor * longest target) + margin`` tokens (<eos> included).

    Args:
        target_lengths: token counts of every gold target the pipeline knows (train, val, test).
        factor, margin: slack above the longest gold program, so a verbose model is not cut either.
    """
    longest = max(target_lengths, default=0)
    return int(math.ceil(factor * (longest + 1))) + margin


def _finish(out: torch.Tensor, done: torch.Tensor, nxt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
    return torch.cat([out, nxt[:, None]], dim=1), done | (nxt == EOS)


def _autoregress(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int,
                 pick: Callable[[torch.Tensor], torch.Tensor], *, use_cache: bool = True) -> torch.Tensor:
    """Decode ``src`` [B, S] token by token, ``pick`` turning last-position logits [B, V] into tokens.

    Runs in eval mode and restores the model's mode. ``use_cache=False`` re-runs the decoder over
    the whole prefix each step (the reference path the KV cache is checked against; the encoder
    runs once either way). Stops when every row has emitted ``<eos>``.
    """
    was_training = model.training
    model.eval()
    B = src.size(0)
    out = src.new_zeros(B, 0)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    tok = torch.full((B,), BOS, dtype=src.dtype, device=src.device)
    if use_cache:
        cache = model.init_cache(src)
    else:
        memory, mask = model.encode(src)
    for _ in range(max_len):
        if use_cache:
            logits = model.decode_step(tok, cache)
        else:
            prefix = torch.cat([torch.full((B, 1), BOS, dtype=src.dtype, device=src.device), out], dim=1)
            logits = model.decode(prefix, memory, mask)[:, -1]
        tok = pick(logits)
        out, done = _finish(out, done, tok)
        if bool(done.all()):
            break
    model.train(was_training)
    return out


@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int, *, use_cache: bool = True) -> torch.Tensor:
    """Greedy ``argmax`` decoding of a batch ``src`` [B, S].

    Args:
        use_cache: True uses the key-value cache (one decoder position per step); False re-runs the
            decoder over the whole prefix each step (the reference path the cache is checked
            against; the encoder still runs once in both).
    """
    return _autoregress(model, src, max_len, lambda logits: logits.argmax(-1), use_cache=use_cache)


@torch.no_grad()
def sample_sequences(model: Seq2SeqTransformer, src: torch.Tensor, k: int, max_len: int, *,
                     generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
    """Draw ``k`` samples ŷ ~ p_f(·|x) per input (ancestral sampling, full softmax, cached).

    Returns ``[B*k, T]``; rows ``i*k .. i*k+k-1`` are the samples of input ``i``. Runs in eval mode
    (no dropout), the distribution whose log-probability the composed objective differentiates.
    """
    def pick(logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    return _autoregress(model, src.repeat_interleave(k, dim=0), max_len, pick)


@torch.no_grad()
def beam_search(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int, *, beam: int = 4,
                length_penalty: float = 1.0) -> torch.Tensor:
    """Batched beam search (cached). Hypotheses are ranked by ``logp / len**length_penalty``.

    Returns the best hypothesis per input, ``[B, T]``. ``beam=1`` equals :func:`greedy_decode`.
    """
    was_training = model.training
    model.eval()
    B, dev = src.size(0), src.device
    cache = model.init_cache(src.repeat_interleave(beam, dim=0))
    seqs = src.new_zeros(B * beam, 0)
    scores = torch.zeros(B, beam, device=dev)
    scores[:, 1:] = -float("inf")  # all beams start identical: keep only one alive at step 0
    done = torch.zeros(B * beam, dtype=torch.bool, device=dev)
    tok = torch.full((B * beam,), BOS, dtype=src.dtype, device=dev)
    for _ in range(max_len):
        logp = torch.log_softmax(model.decode_step(tok, cache).float(), dim=-1)  # [B*beam, V]
        V = logp.size(-1)
        # a finished hypothesis can only extend with <pad> at no cost
        fin = torch.full_like(logp, -float("inf"))
        fin[:, PAD] = 0.0
        logp = torch.where(done[:, None], fin, logp)
        cand = (scores.view(-1, 1) + logp).view(B, beam * V)
        scores, idx = cand.topk(beam, dim=-1)
        origin = (idx // V) + torch.arange(B, device=dev)[:, None] * beam
        tok = (idx % V).view(-1)
        origin = origin.view(-1)
        cache = cache.select(origin)
        seqs = torch.cat([seqs.index_select(0, origin), tok[:, None]], dim=1)
        done = done.index_select(0, origin) | (tok == EOS) | (tok == PAD)
        if bool(done.all()):
            break
    lengths = ((seqs != PAD).sum(1).clamp(min=1).float() ** length_penalty).view(B, beam)
    best = (scores / lengths).argmax(-1) + torch.arange(B, device=dev) * beam
    model.train(was_training)
    return seqs.index_select(0, best)


def strip_special(row: Sequence[int]) -> list[int]:
    """Token ids up to (not including) the first <eos>, without <bos>/<pad>."""
    out = []
    for t in row:
        t = int(t)
        if t == EOS:
            break
        if t not in (PAD, BOS):
            out.append(t)
    return out
