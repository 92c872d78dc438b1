"""Batched decoding: greedy (cached and uncached) and optional beam search.

Every function takes ``max_len`` explicitly: the pipeline derives it from the data
(:func:`max_len_from_data`), so no fixed cap can cut gold programs (the reference capped at 200
tokens, shorter than many SPoC gold programs).

Outputs are token tensors ``[B, T]`` without <bos>; a row ends with <eos> followed by <pad>, or
(greedy, beam) runs to ``max_len`` without <eos> when the model never stops. The autoregressive
loop and the sampler (``composedft.sequence.sample``) live in the core; beam search stays here.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch

from composedft import sequence

from .model import Seq2SeqTransformer

__all__ = ["greedy_decode", "beam_search", "max_len_from_data", "strip_special",
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


@torch.no_grad()
def greedy_decode(model: Seq2SeqTransformer, src: torch.Tensor, max_len: int, *, use_cache: bool = True) -> torch.Tensor:
    """Greedy ``argmax`` decoding of a batch ``src`` [B, S] (:func:`composedft.sequence.greedy_decode`).

    Args:
        use_cache: True uses the key-value cache (one decoder position per step); False re-runs the
            decoder over the whole prefix each step (the reference path the cache is checked
            against; the encoder still runs once in both).
    """
    return sequence.greedy_decode(model, src, max_len, use_cache=use_cache)


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
        # <pad>, <bos> and <unk> are never part of a hypothesis (as in greedy decoding and sampling)
        logits = sequence.mask_logits(model.decode_step(tok, cache).float(), sequence.SPECIALS.never_sampled)
        logp = torch.log_softmax(logits, dim=-1)  # [B*beam, V]
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
        done = done.index_select(0, origin) | (tok == EOS) | (tok == PAD)  # PAD: only after <eos>
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
