"""Benchmark: wall time of one composed fine-tuning step against one standard step.

``python -m simulations.code.bench_composed [--preset toy|sanstype-cpu|sanstype-paper] [--run DIR] [--estimator ours|reference] [--k K]``

Both steps see the same batch of ``composed_batch_size`` SANSTYPE (pseudocode, code) pairs and the
same models (forward, backward and AdamW update). The standard step is the NLL of the gold; the
composed step samples K outputs per input from f, scores the gold under the frozen Π given each
sample, and back-propagates the score-function surrogate plus λ·NLL
(:func:`simulations.code.composed.composed_loss`). With ``--run DIR`` the models are a
run's ``standard.pt`` (f; a copy of ``denoiser.pt`` until that stage has run) and ``denoiser.pt``
(Π) and its tokenizer; otherwise the
models are untrained (the worst case: untrained samples run to the length cap) and the BPE is
trained on generated programs. Prints the median over ``--repeats`` steps after one warm-up
(``--clock cpu``: process CPU time, steadier than wall time on a shared machine); the last line
is ``composed/standard step time: N.NNx``. See docs/code-pipeline.md §5 and
docs/training-speed.md §6.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from composedft.io import CheckpointError, load_checkpoint
from composedft.seeding import derive_seed
from composedft.sequence import ComposedSequence

from . import composed as C
from . import seq2seq_train as T
from .config import PRESETS, model_config
from .decode import max_len_from_data
from .model import Seq2SeqTransformer
from .sanstype import REFERENCE, generate_programs
from .tokenizer import BPETokenizer, VocabError


def bench_models(cfg, tok, run: Path | None) -> tuple[Seq2SeqTransformer, Seq2SeqTransformer, str]:
    """(f, Π, what f is): a run's standard f (or, before that stage has run, a copy of its Π: the
    paper's composed init) and its denoiser, or fresh seeded models."""
    torch.manual_seed(0)
    f = Seq2SeqTransformer(model_config(cfg, len(tok)))
    pi = Seq2SeqTransformer(model_config(cfg, len(tok), denoiser=True))
    if run is None:
        return f, pi, "untrained f and Π"
    pi.load_state_dict(load_checkpoint(run / "models" / "denoiser.pt")["model"])
    std = run / "models" / "standard.pt"
    f.load_state_dict(load_checkpoint(std if std.exists() else run / "models" / "denoiser.pt")["model"])
    return f, pi, f"{'standard f' if std.exists() else 'f = copy of Π'} and Π from {run}"


def bench_setup(cfg, run: Path | None, batch_size: int):
    """Tokenizer, models and one batch of generated SANSTYPE programs, as the benchmark uses them.

    Returns ``(tok, f, Π, what, batch, cap)``: ``batch`` from :func:`seq2seq_train.make_batch` of
    the first ``batch_size`` programs, ``cap`` the data-wide sample cap of the 2000 programs.
    Raises VocabError, CheckpointError or RuntimeError on a bad ``run`` folder.
    """
    progs = generate_programs(2000, derive_seed(0, "bench"), cfg=REFERENCE)
    tok = (BPETokenizer.load(run / "tokenizer.model") if run else
           BPETokenizer.train([e.src for e in progs] + [e.tgt for e in progs], cfg.vocab_size))
    f, pi, what = bench_models(cfg, tok, run)
    corpus = T.encode_corpus(tok, [e.src for e in progs[:batch_size]], [e.tgt for e in progs[:batch_size]])
    cap = max_len_from_data([len(tok.encode_text(e.tgt)) for e in progs], cfg.max_len_factor)
    return tok, f, pi, what, T.make_batch(corpus, range(len(corpus))), cap


def _time_steps(step, repeats: int, clock=time.perf_counter) -> float:
    step(0)  # warm-up (allocations, first-call overheads)
    times = []
    for s in range(1, repeats + 1):
        t0 = clock()
        step(s)
        times.append(clock() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations.code.bench_composed", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="toy", choices=[n for n in PRESETS if PRESETS[n].dataset == "sanstype"])
    p.add_argument("--estimator", default=None, choices=["ours", "reference"],
                   help="composed estimator (default: the preset's); reference draws one sample per input")
    p.add_argument("--k", type=int, default=None, help="samples per input for ours (default: the preset's)")
    p.add_argument("--run", default=None, help="a finished run folder of the same preset (trained f and Π)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time; cpu: this process's CPU time (steadier on a shared machine "
                        "with --threads 1)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = PRESETS[a.preset]
    run = Path(a.run) if a.run else None
    B = cfg.composed_batch_size
    try:
        tok, f, pi, what, batch, cap = bench_setup(cfg, run, B)
    except (VocabError, CheckpointError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    est = a.estimator or cfg.composed_estimator
    k = a.k or cfg.composed_k
    obj = C.ComposedObjective(estimator=est, k=k, baseline=cfg.composed_baseline, lam=cfg.composed_lambda,
                              length_normalize=cfg.composed_length_normalize, max_len=cap,
                              cap_factor=cfg.max_len_factor, seed=1, amp=False)
    model = ComposedSequence(f, pi)
    opt = torch.optim.AdamW([q for q in f.parameters() if q.requires_grad], lr=1e-6)
    f.train()
    lens, distinct = [], []

    def standard(step: int) -> None:
        opt.zero_grad(set_to_none=True)
        T.nll_loss(f, batch, amp=False).backward()
        opt.step()

    def composed(step: int) -> None:
        opt.zero_grad(set_to_none=True)
        loss, stats = C.composed_loss(model, {**batch, "step": step}, obj)
        loss.backward()
        opt.step()
        lens.append(stats["sample_len"])
        distinct.append(stats.get("distinct", 1.0))

    clock = time.perf_counter if a.clock == "wall" else time.process_time
    t_std = _time_steps(standard, a.repeats, clock)
    t_cmp = _time_steps(composed, a.repeats, clock)
    gold = float((batch["tgt_out"] != 0).sum(1).float().mean())
    kk = C.samples_per_input(obj)
    # why the ratio cannot fall to 1: f's teacher-forced forward+backward runs on the distinct
    # samples and on the B gold targets (λ term), against B gold targets in a standard step;
    # sampling and Π's no-grad scoring come on top
    f_rows = statistics.mean(distinct) * B * kk + B
    report = [f"preset {a.preset}, {what}, batch {B} inputs, estimator {est}, K={kk}, {a.threads} thread(s), "
              f"vocab {len(tok)}, {a.clock} clock",
              f"mean gold length {gold:.1f} tokens, mean sample length {statistics.mean(lens):.1f}, cap {cap}, "
              f"distinct samples {100 * statistics.mean(distinct):.0f}%",
              f"sequences through f's forward+backward per step: composed {f_rows:.0f}, standard {B} "
              f"({f_rows / B:.2f}x before sampling and Π's scoring)",
              *(f"{name} step: {1000 * t:.1f} ms (median of {a.repeats})" for name, t in (("standard", t_std),
                                                                                     ("composed", t_cmp))),
              f"composed/standard step time: {t_cmp / t_std:.2f}x"]  # the last line is the benchmark's figure
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
