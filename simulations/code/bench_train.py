"""Benchmark: training throughput (target tokens per second) of the pipeline's NLL step.

    python -m simulations.code.bench_train [--preset toy] [--rounds 6] [--steps 10] [--compile]

Contenders, all in one process on the same generated SANSTYPE corpus (docs/training-speed.md §3):

* **plain loop** (the baseline kept here): our model, uniformly random batches padded to their
  longest sequence, one thread;
* **ours**: length-bucketed batches (:class:`seq2seq_train.BatchSampler`) with the preset's
  ``threads`` (toy: 1; the paper presets: 0 = all cores), or ``--threads``;
* **torch.nn.Transformer**: the same sizes (pre-norm, tied embeddings, sinusoidal positions),
  the same bucketed batches and threads as *ours*;
* with ``--also-threads N``, **ours with other threads** (N threads, 0 = all cores);
* with ``--compile``, **ours + torch.compile** (``dynamic=True``; its compile time is the warm-up).

Each contender runs the same step (forward, token-mean NLL, backward, AdamW) on its own copy of
its model. Rounds of ``--steps`` steps alternate between contenders so that a background load on
a shared machine hits all of them alike; a contender's figure is its target tokens (non-pad
``y`` + ``<eos>``) over its time summed over rounds, after ``--warmup`` untimed steps. The last
two lines are the issue's ratios: ours / torch.nn.Transformer and ours / plain loop.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import time
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from composedft.seeding import seed_everything

from . import seq2seq_train as T
from .config import PRESETS, model_config
from .decode import PAD
from .model import ModelConfig, Seq2SeqTransformer, count_parameters, sinusoidal_positions
from .sanstype import generate_programs
from .tokenizer import Vocab

__all__ = ["TorchTransformer", "sanstype_corpus", "padding_fraction", "run", "main"]


class TorchTransformer(nn.Module):
    """``torch.nn.Transformer`` dressed as :class:`Seq2SeqTransformer`: ``(src, tgt_in) -> logits``.

    Same widths and depths, pre-norm (``norm_first``), one embedding matrix tied to the output
    layer, scaled embeddings plus sinusoidal positions; its single ``dropout`` is the config's
    residual dropout (it also applies it to attention weights and the FFN activation).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.d_model = cfg.d_model
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=cfg.pad_id)
        with warnings.catch_warnings():  # "enable_nested_tensor is True, but ... norm_first": expected
            warnings.simplefilter("ignore", UserWarning)
            self.core = nn.Transformer(d_model=cfg.d_model, nhead=cfg.n_heads, num_encoder_layers=cfg.n_enc_layers,
                                       num_decoder_layers=cfg.n_dec_layers, dim_feedforward=cfg.d_ff,
                                       dropout=cfg.dropout, batch_first=True, norm_first=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.embed.weight

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        pos = sinusoidal_positions(tokens.size(1), self.d_model, device=tokens.device)
        return self.drop(self.embed(tokens) * math.sqrt(self.d_model) + pos)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        # float masks throughout (nn.Transformer warns on mixed bool/float masks)
        pad = torch.zeros(src.shape, dtype=torch.float32, device=src.device).masked_fill(src == PAD, float("-inf"))
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_in.size(1), device=src.device)
        h = self.core(self._embed(src), self._embed(tgt_in), tgt_mask=causal, src_key_padding_mask=pad,
                      memory_key_padding_mask=pad, tgt_is_causal=True)
        return self.lm_head(h)


def sanstype_corpus(n: int, seed: int) -> tuple[T.Corpus, int]:
    """``n`` generated SANSTYPE programs (no data files, no compiler) as a corpus; vocab size."""
    progs = generate_programs(n, seed)
    vocab = Vocab.build([p.src.split() for p in progs] + [p.tgt.split() for p in progs])
    return T.encode_corpus(vocab, [p.src for p in progs], [p.tgt for p in progs]), len(vocab)


def padding_fraction(corpus: T.Corpus, sampler: T.BatchSampler, steps: int) -> float:
    """Share of padding in the src + tgt tensors of the first ``steps`` batches."""
    real = padded = 0
    for s in range(steps):
        idx = sampler(s)
        src, tgt = [len(corpus.src[i]) for i in idx], [len(corpus.tgt[i]) + 1 for i in idx]
        real += sum(src) + sum(tgt)
        padded += len(idx) * (max(src) + max(tgt))
    return 1 - real / padded


@dataclass
class Contender:
    """One way of training: a model, its optimizer, its batch order and its thread count."""
    name: str
    model: nn.Module
    sampler: T.BatchSampler
    threads: int
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    timed_steps: int = 0
    round_rates: list[float] = field(default_factory=list)
    setup_s: float = 0.0

    def __post_init__(self) -> None:
        self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-3,
                                     betas=(0.9, 0.98), weight_decay=1e-4)


def _train_steps(c: Contender, corpus: T.Corpus, steps: int, timed: bool) -> None:
    """``steps`` NLL training steps of ``c`` on its next batches (forward, backward, AdamW)."""
    torch.set_num_threads(c.threads)
    c.model.train()
    tokens, t0 = 0, time.perf_counter()
    for _ in range(steps):
        batch = T.make_batch(corpus, c.sampler(c.step))
        loss = T.nll_loss(c.model, batch)
        c.opt.zero_grad(set_to_none=True)
        loss.backward()
        c.opt.step()
        tokens += int((batch["tgt_out"] != PAD).sum())
        c.step += 1
    dt = time.perf_counter() - t0
    if timed:
        c.tokens, c.seconds, c.timed_steps = c.tokens + tokens, c.seconds + dt, c.timed_steps + steps
        c.round_rates.append(tokens / dt)


def _threads(n: int) -> int:
    """A ``threads`` setting (0 = all cores) as a thread count: every CPU this process may use."""
    return n if n > 0 else len(os.sched_getaffinity(0))


def _contenders(args, corpus: T.Corpus, vocab_size: int) -> list[Contender]:
    cfg = PRESETS[args.preset]
    mcfg = model_config(cfg, vocab_size)
    lengths = T.corpus_lengths(corpus)

    def ours() -> Seq2SeqTransformer:
        torch.manual_seed(args.seed)
        return Seq2SeqTransformer(mcfg)

    def bucketed() -> T.BatchSampler:
        return T.BatchSampler(len(corpus), cfg.batch_size, args.seed, lengths=lengths)

    threads = _threads(cfg.threads if args.threads is None else args.threads)
    out = [Contender("plain loop (random batches, 1 thread)", ours(),
                     T.BatchSampler(len(corpus), cfg.batch_size, args.seed), 1),
           Contender("ours (bucketed batches)", ours(), bucketed(), threads),
           Contender("torch.nn.Transformer (same batches)", TorchTransformer(mcfg), bucketed(), threads)]
    if args.also_threads is not None:
        out.append(Contender("ours with other threads", ours(), bucketed(), _threads(args.also_threads)))
    if args.compile:
        out.append(Contender("ours + torch.compile", torch.compile(ours(), dynamic=True), bucketed(), threads))
    return out


def run(args) -> dict:
    """Build the contenders, warm them up, time interleaved rounds; returns the figures."""
    cfg = PRESETS[args.preset]
    seed_everything(args.seed)
    corpus, vocab_size = sanstype_corpus(args.n, args.seed)
    contenders = _contenders(args, corpus, vocab_size)
    for c in contenders:
        t0 = time.perf_counter()
        _train_steps(c, corpus, args.warmup, timed=False)  # allocations, and the compile if any
        c.setup_s = time.perf_counter() - t0
    for _ in range(args.rounds):
        for c in contenders:
            _train_steps(c, corpus, args.steps, timed=True)
    per_epoch = max(1, len(corpus) // cfg.batch_size)
    return {"preset": args.preset, "cfg": cfg, "vocab": vocab_size, "contenders": contenders,
            "pad_random": padding_fraction(corpus, contenders[0].sampler, per_epoch),
            "pad_bucketed": padding_fraction(corpus, contenders[1].sampler, per_epoch),
            "params": {c.name: count_parameters(c.model) for c in contenders}}


def _rate(c: Contender) -> float:
    return c.tokens / c.seconds if c.seconds > 0 else float("nan")


def report(r: dict) -> list[str]:
    """The printed table; the last two lines are the ratios the issue asks for."""
    cfg, cs = r["cfg"], r["contenders"]
    by = {c.name.split(" (")[0].split(",")[0]: c for c in cs}
    lines = [f"preset={r['preset']} d_model={cfg.d_model} heads={cfg.n_heads} layers={cfg.n_layers}+{cfg.n_layers} "
             f"d_ff={cfg.d_ff} batch={cfg.batch_size} vocab={r['vocab']} params ours={r['params'][cs[1].name]:,} "
             f"nn.Transformer={r['params'][cs[2].name]:,}",
             f"host: {platform.machine()}, {len(os.sched_getaffinity(0))} usable CPUs, torch {torch.__version__}, "
             f"load average {os.getloadavg()[0]:.1f}",
             f"padding in src+tgt over one epoch: random batches {r['pad_random']:.1%}, bucketed {r['pad_bucketed']:.1%}",
             f"{'contender':<40} {'threads':>7} {'tokens/s':>10} {'rounds min-max':>17} {'ms/step':>8} {'warm-up s':>9}"]
    for c in cs:
        lines.append(f"{c.name:<40} {c.threads:>7} {_rate(c):>10,.0f} "
                     f"{min(c.round_rates):>8,.0f}-{max(c.round_rates):<8,.0f} "
                     f"{1000 * c.seconds / c.timed_steps:>8.1f} {c.setup_s:>9.1f}")
    lines.append(f"timed: {len(cs[0].round_rates)} rounds x {cs[0].timed_steps // len(cs[0].round_rates)} steps "
                 f"per contender, wall {r['wall_s']:.0f} s")
    ours = _rate(by["ours"])
    if "ours + torch.compile" in by:
        lines.append(f"ours + torch.compile / ours: {_rate(by['ours + torch.compile']) / ours:.2f}x")
    lines.append(f"ours / torch.nn.Transformer: {ours / _rate(by['torch.nn.Transformer']):.2f}x")
    lines.append(f"ours / plain loop (random batches, 1 thread): {ours / _rate(by['plain loop']):.2f}x")
    return lines


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m simulations.code.bench_train", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="toy", choices=list(PRESETS), help="model size and batch size")
    p.add_argument("--n", type=int, default=1000, help="generated SANSTYPE programs (the labeled set's size)")
    p.add_argument("--rounds", type=int, default=6, help="interleaved timing rounds")
    p.add_argument("--steps", type=int, default=10, help="timed steps per contender per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per contender first")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of ours and torch.nn.Transformer (default: the preset's; 0 = all cores)")
    p.add_argument("--also-threads", type=int, default=None, help="add a row: ours with this many threads (0 = all)")
    p.add_argument("--compile", action="store_true", help="add ours + torch.compile(dynamic=True)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for name in ("n", "rounds", "steps", "warmup"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    for name in ("threads", "also_threads"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0")
    threads_before = torch.get_num_threads()
    t0 = time.perf_counter()
    r = run(args)
    r["wall_s"] = time.perf_counter() - t0
    print("\n".join(report(r)), flush=True)
    torch.set_num_threads(threads_before)
    return r


if __name__ == "__main__":
    main()
