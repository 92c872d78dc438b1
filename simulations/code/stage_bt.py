"""The pipeline's ``backtranslate`` stage: the paper's back-translation baseline (Xie et al. 2021
§4, "BT"), which uses the same unlabeled programs as the denoiser, by back-translation instead
of denoising (docs/code-pipeline.md §7).

1. A reverse model g: code -> pseudocode, a :class:`Seq2SeqTransformer` of f's size, starts from
   Π's weights (the tokenizer is joint, so the shapes match; Π's encoder already reads code, a
   cheap start that costs no extra pre-training) and is trained with token NLL on the labeled
   pairs reversed (code -> pseudocode). Model selection: NLL on the reversed val pairs.
   -> ``models/bt-reverse.pt`` (an interrupted run resumes from ``stages/bt-reverse/``).
2. Greedy g on ``bt_n_unlabeled`` distinct clean unlabeled programs y (the targets of
   ``data/denoise_train.jsonl``; a program equal to a val or test program is never used), a
   seeded subsample -> ``data/bt_pairs.jsonl``, records ``{"src": g(y), "tgt": y}``.

The ``bt`` method then trains f on the labeled pairs followed by these (:func:`.stages.corpora`).
The stage runs only when a method to train has ``data="labeled+bt"`` (:mod:`composedft.methods`)
and returns timing info, or None when ``data/bt_pairs.jsonl`` exists (written last, atomically).
"""
from __future__ import annotations

import time

import numpy as np
import torch

from composedft.compose import init_base_predictor
from composedft.config import ConfigError
from composedft.io import atomic_write_jsonl
from composedft.seeding import derive_seed

from . import seq2seq_train as T
from .config import model_config
from .context import Context, barrier, read_examples
from .decode import EOS, max_len_from_data
from .model import Seq2SeqTransformer
from .stage_data import load_tokenizer, read_pairs, source_text
from .stages import BT_PAIRS, fit_stage, load_model, nll_loss_fn

__all__ = ["REVERSE", "unlabeled_programs", "reversed_corpora", "train_reverse", "backtranslate",
           "stage_backtranslate"]

REVERSE = "bt-reverse"  # the reverse model's name: models/bt-reverse.pt, stages/bt-reverse/
HELD_OUT = ("val", "test_id", "test_ood")  # splits whose programs are never back-translated


def unlabeled_programs(ctx: Context, n: int) -> tuple[list[str], int]:
    """``n`` distinct clean unlabeled programs and the size of the pool they come from.

    The pool is the denoiser's training targets y (clean programs, never val/test data by the
    data stage's construction), deduplicated in file order, less any program equal to a val or
    test program (SANSTYPE's generator can repeat a short program). The subsample is seeded by
    the run seed and kept in file order.

    Raises:
        ConfigError: the pool holds fewer than ``n`` programs (names ``bt_n_unlabeled``).
    """
    path = ctx.rd.data_path("denoise_train.jsonl")
    _, targets = read_pairs(path)
    held = {e.tgt for split in HELD_OUT for e in read_examples(ctx.rd.data_path(f"{split}.jsonl"))}
    pool = [y for y in dict.fromkeys(targets) if y not in held]
    if n > len(pool):
        raise ConfigError(f"field 'bt_n_unlabeled': {n} programs asked, but {path} holds only {len(pool)} "
                          "distinct programs that are not val/test programs")
    rng = np.random.default_rng(derive_seed(ctx.cfg.seed, "bt", "unlabeled"))
    return [pool[i] for i in sorted(rng.permutation(len(pool))[:n])], len(pool)


def reversed_corpora(ctx: Context, vocab) -> tuple[T.Corpus, T.Corpus]:
    """(train, val) corpora of g: the labeled train and val pairs reversed (code -> pseudocode), the
    pseudocode as f reads it (:func:`.stage_data.source_text`), so g writes sources in that form."""
    tr, va = (read_examples(ctx.rd.data_path(f"{s}.jsonl")) for s in ("train", "val"))
    return (T.encode_corpus(vocab, [e.tgt for e in tr], [source_text(ctx.cfg, e.src) for e in tr]),
            T.encode_corpus(vocab, [e.tgt for e in va], [source_text(ctx.cfg, e.src) for e in va]))


def train_reverse(ctx: Context, vocab) -> dict:
    """Train g (module docstring, step 1) and save it to ``models/bt-reverse.pt``; when that file
    exists already (a run killed while decoding), its recorded selection is returned instead."""
    c = ctx.cfg
    if ctx.rd.model_path(REVERSE).exists():
        ck = ctx.rd.load_model(REVERSE)
        return {"best_val_nll": round(float(ck.get("best_val_nll", float("nan"))), 4),
                "best_step": ck.get("best_step"), "resumed_from": "models/bt-reverse.pt"}
    denoiser = load_model(ctx, "denoiser", vocab, denoiser=True)

    def factory() -> Seq2SeqTransformer:  # f's architecture and dropout, filled with Π's weights
        torch.manual_seed(derive_seed(c.seed, REVERSE, "init"))
        return Seq2SeqTransformer(model_config(c, len(vocab))).to(ctx.device)

    g = init_base_predictor("denoiser", factory=factory, denoiser=denoiser)
    del denoiser
    corpus, val = reversed_corpora(ctx, vocab)
    return fit_stage(ctx, REVERSE, g, nll_loss_fn(c.label_smoothing, c.amp), corpus, val,
                     steps=c.bt_reverse_steps, lr=c.bt_reverse_lr, warmup=c.bt_reverse_warmup,
                     batch_size=c.batch_size)


def backtranslate(ctx: Context, vocab, g: Seq2SeqTransformer, programs: list[str]) -> tuple[list[str], dict]:
    """Greedy g(y) for every program y, detokenized; and decoding statistics.

    The cap follows the ``vocab`` stage's rule (:func:`.decode.max_len_from_data`) on the labeled
    training pseudocode, the only pseudocode the pipeline may look at.
    """
    c = ctx.cfg
    train = read_examples(ctx.rd.data_path("train.jsonl"))
    cap = max_len_from_data([len(vocab.encode_text(source_text(c, e.src))) for e in train], c.max_len_factor)
    srcs = [tuple(vocab.encode_text(y)) + (EOS,) for y in programs]
    t0 = time.perf_counter()
    outs = T.translate(g, srcs, cap, batch_size=c.decode_batch_size, beam=1, device=ctx.device, amp=c.amp)
    secs = time.perf_counter() - t0
    texts = [vocab.decode_text(o) for o in outs]
    tokens = sum(len(o) + 1 for o in outs)
    return texts, {"decode_cap": cap, "decode_s": round(secs, 3), "decode_tokens_per_s": tokens / max(secs, 1e-9),
                   "generated_empty": sum(not t.strip() for t in texts),
                   "generated_mean_tokens": round(tokens / max(len(outs), 1) - 1, 2)}


def stage_backtranslate(ctx: Context):
    """Train g, back-translate the unlabeled programs, write ``data/bt_pairs.jsonl`` (module docstring).

    Every rank trains g (as every training stage); rank 0 alone decodes and writes the pairs.
    """
    path = ctx.rd.data_path(BT_PAIRS)
    if path.exists():
        return None
    c, vocab = ctx.cfg, load_tokenizer(ctx)
    programs, pool = unlabeled_programs(ctx, c.bt_n_unlabeled)  # fails fast, before training g
    fit = train_reverse(ctx, vocab)
    info = {**fit, "reverse_model": str(ctx.rd.model_path(REVERSE).relative_to(ctx.rd.path)),
            "reverse_init": "denoiser", "reverse_best_val_nll": fit["best_val_nll"],
            "unlabeled_pool": pool, "bt_pairs": len(programs)}
    if ctx.dist.rank == 0:
        g = load_model(ctx, REVERSE, vocab)  # the selected weights, as saved
        texts, stats = backtranslate(ctx, vocab, g, programs)
        atomic_write_jsonl(path, [{"src": x, "tgt": y} for x, y in zip(texts, programs)])  # last: marks done
        info.update(stats)
        ctx.log(f"  [backtranslate] {len(programs)} pairs -> {path} (g's val NLL {fit['best_val_nll']:.4f}, "
                f"{stats['generated_empty']} empty)")
    barrier(ctx.dist)
    return info
