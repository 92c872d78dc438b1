"""The pipeline's ``predict`` and ``evaluate`` stages (see :mod:`simulations.code.pipeline`).

``predict`` decodes the ID and OOD test sets with every trained f, and with Π applied post hoc;
``evaluate`` compiles and runs each prediction on its test cases (identical programs once).
Each returns timing info, or None when its output already exists (a re-run resumes).
"""
from __future__ import annotations

import time

from composedft.io import atomic_write_csv, atomic_write_json, atomic_write_jsonl, read_json, read_jsonl
from composedft.methods import METHODS, get_method
from composedft.progress import Progress

from . import seq2seq_train as T
from .context import Context, RunFolderError, read_examples
from .data import Example, tgt_to_code
from .decode import EOS
from .stage_data import data_info, encode_sources, load_tokenizer, read_pairs, tokenizer_info
from .stages import load_model

SPLITS = ("id", "ood")


def prediction_sources(methods) -> dict[str, list[tuple[str, bool]]]:
    """``{trained f: [(method, apply Π?), ...]}`` for the evaluated ``methods``: a method predicts
    with its own f, or the f of the method it reuses, then Π if the registry says so."""
    out: dict[str, list[tuple[str, bool]]] = {}
    for name in methods:
        m = get_method(name)
        out.setdefault(m.reuse or name, []).append((name, m.predict_with_denoiser))
    return out


def exact_match_rate(outputs: list[str], references: list[str]) -> float:
    """Fraction of outputs equal to their reference (NaN when there is none)."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references")
    return sum(o == r for o, r in zip(outputs, references)) / len(references) if references else float("nan")


def denoiser_quality(ctx: Context, denoiser, tok_, max_len: int) -> dict:
    """Π's quality: its **identity rate** on clean validation gold programs (returned unchanged; a Π
    that edits correct code hurts post hoc and composed alike) and its **repair rate** on held-out
    corrupted programs (exactly the clean one back). Π's outputs go to ``decoded/denoiser_*.jsonl``."""
    c, out_dir = ctx.cfg, ctx.rd / "decoded"
    clean = [e.tgt for e in read_examples(ctx.rd.data_path("val.jsonl"))]
    srcs, tgts = read_pairs(ctx.rd.data_path("denoise_val.jsonl"))
    broken = [(s, t) for s, t in zip(srcs, tgts) if s != t]
    rates = {}
    for name, inputs, refs in (("identity", clean, clean), ("repair", [s for s, _ in broken], [t for _, t in broken])):
        with Progress(len(inputs), f"predict: Π {name}", unit="prog") as bar:
            ys = T.translate(denoiser, [tuple(tok_.encode_text(x)) + (EOS,) for x in inputs], max_len,
                             batch_size=c.decode_batch_size, beam=c.beam, device=ctx.device, amp=c.amp,
                             progress=bar.update)
        outs = [tok_.decode_text(y) for y in ys]
        atomic_write_jsonl(out_dir / f"denoiser_{name}.jsonl",
                           [{"input": x, "output": o, "reference": r} for x, o, r in zip(inputs, outs, refs)])
        rates[f"denoiser_{name}_rate"] = round(exact_match_rate(outs, refs), 4)
        rates[f"denoiser_{name}_n"] = len(refs)
    return rates


def stage_predict(ctx: Context):
    """Greedy outputs of direct / standard / composed f, and Π applied to each (post hoc), through
    the core composition (:func:`composedft.sequence.posthoc_decode`, batched).

    Per trained f, decoding is done already when every method that predicts with it has both
    splits, so methods added to a finished run folder are decoded alone (earlier files are kept).

    Progress (issue 11 item 4) counts test programs decoded (f then Π) over every trained f and
    split, one bar for the stage so its ETA is the stage's: a tqdm bar on a terminal, periodic
    lines otherwise (:class:`composedft.progress.Progress`).
    """
    out_dir, c = ctx.rd / "decoded", ctx.cfg
    done_path = out_dir / "done.json"
    todo = {name: missing for name, users in prediction_sources(c.methods).items()
            if (missing := [(m, p) for m, p in users
                            if not all((out_dir / f"{m}_{s}.jsonl").exists() for s in SPLITS)])}
    if done_path.exists() and not todo:
        return None
    tok_ = load_tokenizer(ctx)
    max_len = tokenizer_info(ctx)["max_decode_len"]
    denoiser = load_model(ctx, "denoiser", tok_, denoiser=True)
    tests = {split: read_examples(ctx.rd.data_path(f"test_{split}.jsonl")) for split in SPLITS}
    n_dec, tok = 0, 0
    t0 = time.perf_counter()
    with Progress(len(todo) * sum(len(v) for v in tests.values()), "predict", unit="prog") as bar:
        for split, examples in tests.items():
            srcs = encode_sources(c, tok_, [e.src for e in examples])
            for model_name, users in todo.items():
                f = load_model(ctx, model_name, tok_)
                bar.set_postfix(f=model_name, split=split)
                with_pi = any(p for _, p in users)  # Π's pass only when a method predicts Π(f(x))
                res = T.translate(f, srcs, max_len, batch_size=c.decode_batch_size, beam=c.beam, device=ctx.device,
                                  amp=c.amp, denoiser=denoiser if with_pi else None, progress=bar.update)
                base, post = res if with_pi else (res, [])
                n_dec += (1 + with_pi) * len(srcs)
                tok += sum(len(y) + 1 for y in base) + sum(len(y) + 1 for y in post)
                for method, posthoc in users:
                    ys = post if posthoc else base
                    atomic_write_jsonl(out_dir / f"{method}_{split}.jsonl",
                                       [{"id": e.id, "tgt": tok_.decode_text(y)} for e, y in zip(examples, ys)])
    secs = time.perf_counter() - t0
    old = read_json(done_path) if done_path.exists() else {}
    quality = ({k: v for k, v in old.items() if k.startswith("denoiser_")} if old
               else denoiser_quality(ctx, denoiser, tok_, max_len))  # Π is frozen: measured once
    atomic_write_json(done_path, {"max_decode_len": max_len, "sequences": n_dec + old.get("sequences", 0), **quality})
    return {"sequences": n_dec, "decoded_tokens": tok, "tokens_per_s": tok / max(secs, 1e-9), "max_decode_len": max_len,
            **quality}


def evaluate_unique(ev, jobs: dict[str, dict[str, str]], examples: list[Example]) -> dict[str, tuple[list[dict], dict]]:
    """Evaluate every method's predictions on one split, running each distinct (example, code)
    pair once, in one worker pool.

    Methods often emit the same program for an example (post hoc Π leaves correct code alone;
    composed f starts from standard f), and a verdict depends only on the code and the
    example's test cases, so one run per distinct pair gives every method's records exactly.
    Returns ``{method: (records, summary)}`` as :meth:`Evaluator.evaluate` would.
    """
    import dataclasses

    t0 = time.perf_counter()
    unique: dict[tuple[str, str], str] = {}  # (example id, code) -> task id
    for codes in jobs.values():
        for e in examples:
            if e.id in codes:
                unique.setdefault((e.id, codes[e.id]), f"{e.id}#{len(unique)}")
    by_id = {e.id: e for e in examples}
    tasks = [dataclasses.replace(by_id[eid], id=tid) for (eid, _), tid in unique.items()]
    records, _ = ev.evaluate({tid: code for (_, code), tid in unique.items()}, tasks)
    verdict = {rec["id"]: rec for rec in records}
    wall = time.perf_counter() - t0
    out = {}
    for method, codes in jobs.items():
        recs = []
        for e in examples:
            if e.id not in codes:
                recs.append({"id": e.id, "status": "missing", "first_failing_case": None, "detail": "no prediction"})
            else:
                recs.append({**verdict[unique[(e.id, codes[e.id])]], "id": e.id})
        summary = ev.summarize(recs, wall)
        summary["distinct_programs_run"] = len(unique)
        out[method] = (recs, summary)
    return out


def stage_evaluate(ctx: Context):
    """Compile and run every prediction on its test cases; ``results.csv`` + ``predictions/``.

    Per split, identical programs of different methods are run once (:func:`evaluate_unique`);
    binaries are also cached by source hash across runs (:mod:`.evaluator`).
    """
    from .evaluator import Evaluator

    c = ctx.cfg
    split_files = data_info(ctx).get("split_files", {})
    ev = Evaluator(workers=c.eval_workers or None, time_limit_s=c.time_limit_s)
    rows, n_prog, n_run, verdicts = [], 0, 0, []
    done = read_json(ctx.rd / "decoded" / "done.json")  # Π's quality, measured by the predict stage
    quality = {k: v for k, v in done.items() if k.startswith("denoiser_")}
    # results.csv and verdicts.csv list every method evaluated in this folder, not only this call's
    # (methods added to a finished run are evaluated alone; the earlier rows must stay)
    listed = list(c.methods) + [m for m in METHODS if m not in c.methods and all(
        (ctx.rd / "eval" / f"{m}_{sp}.json").exists() and ctx.rd.predictions_path(m, sp).exists() for sp in SPLITS)]
    for split in SPLITS:
        examples = read_examples(ctx.rd.data_path(f"test_{split}.jsonl"))
        jobs, tgts = {}, {}
        for method in c.methods:
            if (ctx.rd / "eval" / f"{method}_{split}.json").exists():  # resumable per (method, split)
                continue
            dec_path = ctx.rd / "decoded" / f"{method}_{split}.jsonl"
            if not dec_path.exists():
                raise RunFolderError(f"{dec_path}: missing (run the 'predict' stage first)")
            decoded = read_jsonl(dec_path)
            try:
                jobs[method] = {r["id"]: tgt_to_code(r["tgt"]) for r in decoded}
                tgts[method] = {r["id"]: r["tgt"] for r in decoded}
            except KeyError as err:
                raise RunFolderError(f"{dec_path}: records need 'id' and 'tgt' (missing {err})") from None
        results = evaluate_unique(ev, jobs, examples) if jobs else {}
        for method, (records, summary) in results.items():
            codes = jobs[method]
            ctx.rd.write_predictions(method, split,
                               [{"id": r["id"], "code": codes.get(r["id"], ""), "status": r["status"],
                                 "tgt": tgts[method].get(r["id"], ""), "detail": r.get("detail", "")[:300]}
                                for r in records])
            atomic_write_json(ctx.rd / "eval" / f"{method}_{split}.json", summary)
            n_prog += summary["n"]
        n_run += next(iter(results.values()))[1]["distinct_programs_run"] if results else 0
        ok = {m: {r["id"]: int(r.get("status") == "ok") for r in ctx.rd.read_predictions(m, split)} for m in listed}
        verdicts += [{"split": split, "id": e.id, **{m: ok[m].get(e.id, 0) for m in listed}} for e in examples]
        for method in listed:
            summary = read_json(ctx.rd / "eval" / f"{method}_{split}.json")
            rows.append({"method": method, "split": split, "exec_acc": round(summary["exec_acc"], 4),
                         "compile_rate": round(summary["compile_rate"], 4), "n": summary["n"], "seed": c.seed,
                         "dataset": c.dataset, "composed_init": c.composed_init,
                         "tokenizer": c.tokenizer, "split_file": split_files.get(split, ""), **quality,
                         **{k: summary["counts"][k] for k in ("compile_error", "runtime_error", "wrong_answer", "timeout")}})
    atomic_write_csv(ctx.rd / "verdicts.csv", verdicts)  # per-program 0/1 per method: `summary` pairs them
    ctx.rd.write_results(rows)
    return {"programs_evaluated": n_prog, "distinct_programs_run": n_run, "rows": rows}
