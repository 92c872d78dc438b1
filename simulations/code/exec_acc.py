"""Execution accuracy of a trained f on labeled programs: decode, run on the test cases, count.

One function shared by ``val-acc`` (:mod:`.val_acc`, a one-off measurement with the programs saved
for error analysis) and by the fine-tuning stages when ``select_on="exec"`` (:mod:`.stages`: the
checkpoint with the highest validation execution accuracy is kept, and early stopping counts
validations without a higher one). Token NLL is what the models are trained on, but the quantity
the paper reports is execution accuracy; on SANSTYPE the two part ways once f becomes
over-confident (docs/code-pipeline.md §10).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from . import seq2seq_train as T
from .context import read_examples
from .data import Example, tgt_to_code
from .stage_data import encode_sources, tokenizer_info

__all__ = ["exec_accuracy", "val_exec_scorer"]


def exec_accuracy(cfg, tok, f, examples: Sequence[Example], max_len: int, *, denoiser=None, beam: int = 1,
                  workers: int | None = None, evaluator=None) -> dict:
    """Decode ``examples`` with ``f`` (then Π when ``denoiser`` is given: post hoc) and run every
    program through the sandboxed evaluator.

    Returns ``{"acc", "n", "ok", "codes" (id -> C++), "records" (the evaluator's, in order),
    "summary"}``; ``acc`` is ``ok / n`` (0.0 for no examples). ``evaluator`` may be passed to reuse
    one (its compile cache); by default one is built with ``workers`` and ``cfg.time_limit_s``.
    """
    if not examples:
        return {"acc": 0.0, "n": 0, "ok": 0, "codes": {}, "records": [], "summary": {}}
    if evaluator is None:
        from .evaluator import Evaluator  # g++ and the sandbox are needed only when programs run
        evaluator = Evaluator(workers=workers, time_limit_s=cfg.time_limit_s)
    srcs = encode_sources(cfg, tok, [e.src for e in examples])
    res = T.translate(f, srcs, max_len, batch_size=cfg.decode_batch_size, beam=beam, amp=False, denoiser=denoiser)
    ys = res[1] if denoiser is not None else res
    codes = {e.id: tgt_to_code(tok.decode_text(y)) for e, y in zip(examples, ys)}
    records, summary = evaluator.evaluate(codes, examples)
    ok = sum(r["status"] == "ok" for r in records)
    return {"acc": ok / len(records), "n": len(records), "ok": ok, "codes": codes, "records": records,
            "summary": summary}


def val_exec_scorer(ctx, tok) -> Callable[..., float]:
    """``score(f, denoiser=None) -> acc``: greedy execution accuracy on the run's validation programs.

    The one validation measurement of the training stages (``select_on="exec"`` checkpoints and the
    composed rate grid, :mod:`.composed_select`): ``val.jsonl`` is read once, and one evaluator is
    built on the first call (g++ and the sandbox only when programs run), so its compile cache spans
    every validation of the stage."""
    c = ctx.cfg
    examples = read_examples(ctx.rd.data_path("val.jsonl"))
    max_len = tokenizer_info(ctx)["max_decode_len"]
    evaluator = None

    def score(f, denoiser=None) -> float:
        nonlocal evaluator
        if evaluator is None:
            from .evaluator import Evaluator
            evaluator = Evaluator(workers=c.eval_workers or None, time_limit_s=c.time_limit_s)
        return exec_accuracy(c, tok, f, examples, max_len, denoiser=denoiser, evaluator=evaluator)["acc"]
    return score
