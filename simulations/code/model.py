"""Encoder-decoder Transformer for pseudocode -> code and for the code denoiser Π.

nanoGPT-sized plain PyTorch: pre-norm blocks (fairseq's ``--encoder/decoder-normalize-before``,
as in the reference runs), sinusoidal positions (so no position table caps the
output length), ``F.scaled_dot_product_attention`` and an optional single embedding matrix shared
by the encoder, the decoder and the output projection (``--share-all-embeddings``). Sharing one
joint src+tgt vocabulary is what lets the denoiser (code -> code) initialise the base predictor
(pseudocode -> code) weight for weight.

Decoding state: :meth:`Seq2SeqTransformer.decode_step` consumes one token per sequence and a
key-value cache (:class:`KVCache`); :meth:`Seq2SeqTransformer.forward` is the teacher-forced
(uncached) path. Both share every weight and every op, so their logits agree to rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ModelConfig", "Seq2SeqTransformer", "KVCache", "count_parameters"]


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int                  # joint src+tgt vocabulary (specials <pad>=0 <bos>=1 <eos>=2 <unk>=3)
    d_model: int = 256               # width (SANSTYPE/SPoC: 256)
    n_heads: int = 2                 # attention heads (SANSTYPE 2, SPoC 8)
    n_enc_layers: int = 3            # encoder depth (SANSTYPE 3, SPoC 5)
    n_dec_layers: int = 3            # decoder depth
    d_ff: int = 1024                 # feed-forward width
    dropout: float = 0.1             # residual/embedding dropout
    attn_dropout: float = 0.2        # dropout on attention weights
    relu_dropout: float = 0.2        # dropout after the FFN activation
    share_embeddings: bool = True    # one matrix for encoder input, decoder input and output
    pad_id: int = 0                  # padding token (masked everywhere)


def sinusoidal_positions(length: int, dim: int, offset: int = 0, device=None) -> torch.Tensor:
    """Vaswani et al. (2017) sinusoidal position codes, shape ``[length, dim]``.

    Computed on the fly for positions ``offset .. offset+length-1``: no table, no length cap.
    """
    pos = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device, dtype=torch.float32) / max(half - 1, 1))
    ang = pos * freq[None, :]
    out = torch.cat([torch.sin(ang), torch.cos(ang)], dim=1)
    if dim % 2:
        out = F.pad(out, (0, 1))
    return out


class Attention(nn.Module):
    """Multi-head attention (self or cross) on ``F.scaled_dot_product_attention``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0, "d_model must be divisible by n_heads"
        self.n_heads, self.attn_dropout = cfg.n_heads, cfg.attn_dropout
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, D] -> [B, H, T, D/H]
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)

    def project_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        """Attend from ``x`` [B, T, D] to heads ``k``/``v`` [B, H, S, D/H]; ``mask`` True = may attend."""
        q = self._heads(self.q(x))
        p = self.attn_dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        B, H, T, Dh = y.shape
        return self.proj(y.transpose(1, 2).reshape(B, T, H * Dh))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(cfg.d_model, cfg.d_ff), nn.Linear(cfg.d_ff, cfg.d_model)
        self.drop = nn.Dropout(cfg.relu_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class EncoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.d_model), Attention(cfg)
        self.ln2, self.ffn = nn.LayerNorm(cfg.d_model), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        k, v = self.attn.project_kv(h)
        x = x + self.drop(self.attn(h, k, v, mask=mask))
        return x + self.drop(self.ffn(self.ln2(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(cfg.d_model), Attention(cfg)
        self.ln2, self.cross_attn = nn.LayerNorm(cfg.d_model), Attention(cfg)
        self.ln3, self.ffn = nn.LayerNorm(cfg.d_model), FeedForward(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cross_kv, src_mask):
        """One block over a whole target prefix (training / teacher forcing): causal self-attention."""
        h = self.ln1(x)
        x = x + self.drop(self.self_attn(h, *self.self_attn.project_kv(h), causal=True))
        x = x + self.drop(self.cross_attn(self.ln2(x), *cross_kv, mask=src_mask))
        return x + self.drop(self.ffn(self.ln3(x)))

    def step(self, x, cross_kv, src_mask, kbuf: torch.Tensor, vbuf: torch.Tensor, pos: int):
        """One block for one new position ``x`` [B, 1, D]: its key/value are written into the
        preallocated buffers at ``pos`` (no concatenation: O(1) copies per step, not O(t)), and the
        query attends to positions ``0..pos`` (all earlier: no causal mask needed)."""
        h = self.ln1(x)
        k, v = self.self_attn.project_kv(h)
        kbuf[:, :, pos:pos + 1] = k
        vbuf[:, :, pos:pos + 1] = v
        x = x + self.drop(self.self_attn(h, kbuf[:, :, :pos + 1], vbuf[:, :, :pos + 1]))
        x = x + self.drop(self.cross_attn(self.ln2(x), *cross_kv, mask=src_mask))
        return x + self.drop(self.ffn(self.ln3(x)))


@dataclass
class KVCache:
    """Decoder state for incremental decoding of a batch.

    ``cross``: per layer the encoder memory's (k, v), computed once; ``self_kv``: per layer
    preallocated (k, v) buffers [B, H, capacity, D/H] whose first ``pos`` positions hold the tokens
    decoded so far (capacity doubles when full); ``src_mask``: [B, 1, 1, S]; ``pos``: next position.
    """
    cross: list[tuple[torch.Tensor, torch.Tensor]]
    self_kv: list[tuple[torch.Tensor, torch.Tensor] | None]
    src_mask: torch.Tensor
    pos: int = 0

    def select(self, index: torch.Tensor) -> "KVCache":
        """Keep batch rows ``index`` (beam search reorders hypotheses; decoding drops finished rows)."""
        pick = lambda t: t.index_select(0, index)  # noqa: E731
        return KVCache([(pick(k), pick(v)) for k, v in self.cross],
                       [None if kv is None else (pick(kv[0][:, :, :self.pos]), pick(kv[1][:, :, :self.pos]))
                        for kv in self.self_kv], pick(self.src_mask), self.pos)

    def buffers(self, i: int, like: torch.Tensor, n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``i``'s (k, v) buffers with room for position ``pos`` (allocated or grown x2)."""
        kv = self.self_kv[i]
        if kv is None or kv[0].size(2) <= self.pos:
            B, D = like.size(0), like.size(-1)
            cap = max(32, 2 * self.pos)
            new = tuple(like.new_zeros(B, n_heads, cap, D // n_heads) for _ in range(2))
            if kv is not None:
                new[0][:, :, :self.pos] = kv[0][:, :, :self.pos]
                new[1][:, :, :self.pos] = kv[1][:, :, :self.pos]
            self.self_kv[i] = kv = new
        return kv


class Seq2SeqTransformer(nn.Module):
    """Pre-norm encoder-decoder Transformer ``p(y | x)``; the base predictor f and the denoiser Π."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.src_embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        self.tgt_embed = self.src_embed if cfg.share_embeddings else nn.Embedding(cfg.vocab_size, cfg.d_model,
                                                                                 padding_idx=cfg.pad_id)
        self.enc_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_enc_layers))
        self.dec_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_dec_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.apply(self._init_weights)
        if cfg.share_embeddings:
            self.lm_head.weight = self.src_embed.weight  # tied: one matrix, as fairseq's share-all

    def _init_weights(self, m: nn.Module) -> None:
        # fairseq's transformer init: xavier-uniform linears, N(0, d^-1/2) embeddings, zero pad row
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, self.cfg.d_model ** -0.5)
            with torch.no_grad():
                m.weight[self.cfg.pad_id].zero_()

    def _embed(self, table: nn.Embedding, tokens: torch.Tensor, offset: int = 0,
               delta: torch.Tensor | None = None) -> torch.Tensor:
        x = table(tokens) * math.sqrt(self.cfg.d_model)
        if delta is not None:  # SMART's perturbation of the (scaled) token embeddings
            x = x + delta
        pos = sinusoidal_positions(tokens.size(1), self.cfg.d_model, offset, tokens.device)
        return self.drop(x + pos.to(x.dtype))

    def src_mask(self, src: torch.Tensor) -> torch.Tensor:
        """Key mask [B, 1, 1, S]: True where a source token is real (not padding)."""
        return (src != self.cfg.pad_id)[:, None, None, :]

    def encode(self, src: torch.Tensor, src_delta: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode ``src`` [B, S] (right-padded), its embeddings shifted by ``src_delta`` [B, S, D]
        when given (SMART). Returns memory [B, S, D] and its key mask."""
        mask = self.src_mask(src)
        x = self._embed(self.src_embed, src, delta=src_delta)
        for layer in self.enc_layers:
            x = layer(x, mask)
        return self.enc_ln(x), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """Teacher-forced decoder (no cache): logits [B, T, V] for inputs ``tgt_in`` [B, T]."""
        x = self._embed(self.tgt_embed, tgt_in)
        for layer in self.dec_layers:
            x = layer(x, layer.cross_attn.project_kv(memory), src_mask)
        return self.lm_head(self.dec_ln(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, src_delta: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of ``p(y_t | y_<t, x)`` for every position of ``tgt_in`` (= <bos> + y[:-1])."""
        memory, mask = self.encode(src, src_delta)
        return self.decode(tgt_in, memory, mask)

    # ---- incremental decoding ---------------------------------------------------------------
    def init_cache(self, src: torch.Tensor) -> KVCache:
        """Encode once and precompute every layer's cross-attention keys/values."""
        return self.cache_from_memory(*self.encode(src))

    def cache_from_memory(self, memory: torch.Tensor, mask: torch.Tensor) -> KVCache:
        """A fresh cache for an encoded batch (lets K samples per source share one encoder pass)."""
        cross = [layer.cross_attn.project_kv(memory) for layer in self.dec_layers]
        return KVCache(cross=cross, self_kv=[None] * len(self.dec_layers), src_mask=mask, pos=0)

    def decode_step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed ``tokens`` [B] at position ``cache.pos``; returns next-token logits [B, V].

        The cache is updated in place (inference only: autograd cannot go through its buffers).
        Work per step is O(t) instead of the uncached O(t^2).
        """
        x = self._embed(self.tgt_embed, tokens[:, None], offset=cache.pos)
        for i, layer in enumerate(self.dec_layers):
            kbuf, vbuf = cache.buffers(i, x, self.cfg.n_heads)
            x = layer.step(x, cache.cross[i], cache.src_mask, kbuf, vbuf, cache.pos)
        cache.pos += 1
        return self.lm_head(self.dec_ln(x))[:, 0]


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
