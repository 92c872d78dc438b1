"""The pipeline's stages (see :mod:`simulations.code.pipeline`); each returns timing info, or
None when its output already exists (so re-running a command resumes where it stopped).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from composedft.compose import Composed, freeze, init_base_predictor
from composedft.config import cfg_to_dict
from composedft.io import (CheckpointError, DataFileError, atomic_write_csv, atomic_write_json,
                           atomic_write_jsonl, load_checkpoint, read_json, read_jsonl, save_checkpoint)
from composedft.runs import RunDir
from composedft.seeding import derive_seed
from composedft.train import TrainConfig

from . import seq2seq_train as T
from .config import CodeConfig, model_config
from .data import Example, TestCase, default_data_dir, tgt_to_code
from .decode import EOS, max_len_from_data
from .model import Seq2SeqTransformer, count_parameters
from .tokenizer import Vocab

TRAINING_STAGES = ("denoiser", "direct", "standard", "composed")
SPLITS = ("id", "ood")
# (method, model whose greedy output is used, apply the denoiser Π post hoc?)
METHODS = (("direct", "direct", False), ("direct+posthoc", "direct", True), ("standard", "standard", False),
           ("standard+posthoc", "standard", True), ("composed", "composed", True),
           ("composed-base", "composed", False))
# fields that may change between invocations on one run folder (they do not change results)
RESUME_FREE_FIELDS = {"device", "threads", "eval_workers", "decode_batch_size", "amp"}


class RunFolderError(RuntimeError):
    """A run-folder file that is missing or unreadable; the message names it."""


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    initialized: bool = False


@dataclass
class Context:
    cfg: CodeConfig
    rd: RunDir
    device: torch.device
    dist: Dist

    def log(self, msg: str) -> None:
        if self.dist.rank == 0:
            print(msg, flush=True)


# ---- distributed ---------------------------------------------------------------------------------

def init_distributed(device: torch.device) -> Dist:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), initialized=True)


def barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist
        dist.barrier()


def cleanup_distributed(d: Dist) -> None:
    if d.initialized:
        import torch.distributed as dist
        dist.destroy_process_group()


# ---- run-folder files ----------------------------------------------------------------------------

def _example_record(e: Example) -> dict:
    return {"id": e.id, "src": e.src, "tgt": e.tgt, "cases": [[c.input, c.output] for c in e.cases],
            "probid": e.probid}


def write_examples(path: Path, examples) -> None:
    atomic_write_jsonl(path, [_example_record(e) for e in examples])


def read_examples(path: Path) -> list[Example]:
    """Examples of a run folder's ``data/*.jsonl``; a missing/corrupt file raises naming it."""
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage, or remove the folder and start again)")
    out = []
    for n, r in enumerate(read_jsonl(path), 1):
        try:
            out.append(Example(r["id"], r["src"], r["tgt"], tuple(TestCase(i, o) for i, o in r["cases"]),
                               r.get("probid", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise RunFolderError(f"{path}: record {n}: malformed example ({err!r})") from None
    return out


def _load_model(ctx: Context, name: str, vocab: Vocab, denoiser: bool = False) -> Seq2SeqTransformer:
    path = ctx.rd / "models" / f"{name}.pt"
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the '{name}' stage first)")
    ck = load_checkpoint(path)
    model = Seq2SeqTransformer(model_config(ctx.cfg, len(vocab), denoiser=denoiser))
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: does not hold this configuration's model ({str(err).splitlines()[0]})") from None
    return model.to(ctx.device)


def _vocab(ctx: Context) -> Vocab:
    path = ctx.rd / "vocab.json"
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'vocab' stage first)")
    from .tokenizer import VocabError
    try:
        return Vocab.load(path)
    except VocabError as err:
        raise RunFolderError(str(err)) from None


def _data_info(ctx: Context) -> dict:
    path = ctx.rd / "data" / "info.json"
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage first)")
    return read_json(path)


# ---- stage: data ---------------------------------------------------------------------------------

def _data_dir(cfg: CodeConfig) -> Path | None:
    return Path(cfg.data_dir) if cfg.data_dir else default_data_dir()


def _sanstype_data(cfg: CodeConfig):
    from . import corrupt, sanstype
    gen = sanstype.REFERENCE  # the shared train files follow the released generator's distribution
    root = _data_dir(cfg)
    shared = root / "sanstype" if root is not None else None
    if shared is not None and (shared / "train.src").exists():
        from .data import load_sanstype
        train = load_sanstype(shared / "train")[:cfg.n_labeled]
        val = load_sanstype(shared / "val")[:cfg.n_val]
        source = str(shared)
    else:
        train = sanstype.generate(cfg.n_labeled, derive_seed(cfg.seed, "train"), id_prefix="train-", cfg=gen)
        val = sanstype.generate(cfg.n_val, derive_seed(cfg.seed, "val"), id_prefix="val-", cfg=gen)
        source = "generated"
    test_id = sanstype.generate(cfg.n_test_id, derive_seed(cfg.seed, "test_id"), id_prefix="id-", cfg=gen)
    test_ood = sanstype.generate(cfg.n_test_ood, derive_seed(cfg.seed, "test_ood"), ood=True, id_prefix="ood-", cfg=gen)
    unlabeled = sanstype.generate_programs(cfg.n_unlabeled, derive_seed(cfg.seed, "unlabeled"), cfg=gen)
    rng = np.random.default_rng(derive_seed(cfg.seed, "corrupt"))
    pairs = [(corrupt.corrupt_sanstype(e.tgt, rng), e.tgt) for e in unlabeled]
    return train, val, test_id, test_ood, pairs, {"labeled_source": source, "generator": "reference"}


def _spoc_data(cfg: CodeConfig):
    from . import corrupt
    from .data import load_spoc
    root = _data_dir(cfg)
    if root is None or not (root / "spoc" / "train-eval.tsv").exists():
        raise DataFileError(f"SPoC data not found under {root or '../shared/data'} (set --data_dir or $COMPOSEDFT_DATA)")
    tc = root / "spoc" / "testcases"
    programs = load_spoc(root / "spoc" / "train-eval.tsv", tc) + load_spoc(root / "spoc" / "train-test.tsv", tc)
    rng = np.random.default_rng(derive_seed(cfg.seed, "spoc-split"))
    probs = sorted({e.probid for e in programs})
    held = set(rng.permutation(probs)[:cfg.spoc_ood_problems].tolist())
    ood_proxy = [e for e in programs if e.probid in held]
    rest = [e for e in programs if e.probid not in held]
    order = rng.permutation(len(rest))
    n_val = max(1, int(round(cfg.spoc_val_frac * len(rest))))
    val = [rest[i] for i in order[:n_val]]
    train = [rest[i] for i in order[n_val:]]
    if cfg.spoc_max_tgt_tokens:
        train = [e for e in train if len(e.tgt.split()) <= cfg.spoc_max_tgt_tokens]
    test_id = load_spoc(root / "spoc" / "testw.tsv", tc)
    if cfg.n_test_id:
        test_id = [test_id[i] for i in sorted(rng.permutation(len(test_id))[:cfg.n_test_id])]
    if cfg.spoc_testp:
        test_ood, ood_name = load_spoc(cfg.spoc_testp, tc), "testp"
    else:
        test_ood, ood_name = ood_proxy, "held-out-problems proxy"
    if cfg.n_test_ood:
        test_ood = [test_ood[i] for i in sorted(rng.permutation(len(test_ood))[:cfg.n_test_ood])]
    # Denoiser data: corruptions of the TRAINING programs only (never val/test code).
    crng = np.random.default_rng(derive_seed(cfg.seed, "corrupt"))
    pairs = []
    for e in train:
        for _ in range(cfg.spoc_corruptions):
            res = corrupt.corrupt_spoc(e.tgt, crng)  # kept only if it fails to compile (DrRepair)
            if res is not None:
                pairs.append((res[0], e.tgt))
        pairs.append((e.tgt, e.tgt))  # identity pairs: Π must leave correct code alone
    pairs = [pairs[i] for i in crng.permutation(len(pairs))]
    return train, val, test_id, test_ood, pairs, {"ood": ood_name, "held_out_problems": sorted(held)}


def stage_data(ctx: Context):
    cfg, d = ctx.cfg, ctx.rd / "data"
    if (d / "info.json").exists():
        return None
    maker = _sanstype_data if cfg.dataset == "sanstype" else _spoc_data
    train, val, test_id, test_ood, pairs, extra = maker(cfg)
    n_dval = max(1, len(pairs) // 20)  # 5% of denoiser pairs for its model selection
    for name, ex in (("train", train), ("val", val), ("test_id", test_id), ("test_ood", test_ood)):
        write_examples(d / f"{name}.jsonl", ex)
    atomic_write_jsonl(d / "denoise_train.jsonl", [{"src": s, "tgt": t} for s, t in pairs[n_dval:]])
    atomic_write_jsonl(d / "denoise_val.jsonl", [{"src": s, "tgt": t} for s, t in pairs[:n_dval]])
    lengths = [len(e.tgt.split()) for part in (train, val, test_id, test_ood) for e in part]
    lengths += [len(t.split()) for _, t in pairs]
    info = {"dataset": cfg.dataset, "n": {"train": len(train), "val": len(val), "test_id": len(test_id),
                                          "test_ood": len(test_ood), "denoise": len(pairs)},
            "max_target_tokens": max(lengths), "max_decode_len": max_len_from_data(lengths, cfg.max_len_factor),
            **extra}
    atomic_write_json(d / "info.json", info)  # written last: marks the stage complete
    return {"n": info["n"]}


def _pairs(path: Path) -> tuple[list[str], list[str]]:
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the 'data' stage first)")
    recs = read_jsonl(path)
    try:
        return [r["src"] for r in recs], [r["tgt"] for r in recs]
    except KeyError as err:
        raise RunFolderError(f"{path}: records need 'src' and 'tgt' (missing {err})") from None


def stage_vocab(ctx: Context):
    path = ctx.rd / "vocab.json"
    if path.exists():
        return None
    _data_info(ctx)
    train = read_examples(ctx.rd / "data" / "train.jsonl")
    ds, dt = _pairs(ctx.rd / "data" / "denoise_train.jsonl")
    toks = [s.split() for s in [e.src for e in train] + [e.tgt for e in train] + ds + dt]
    vocab = Vocab.build(toks, min_freq=1)
    vocab.save(path)
    return {"size": len(vocab)}


# ---- training stages -----------------------------------------------------------------------------

def _corpora(ctx: Context, vocab: Vocab, denoiser: bool) -> tuple[T.Corpus, T.Corpus]:
    d = ctx.rd / "data"
    if denoiser:
        (s, t), (vs, vt) = _pairs(d / "denoise_train.jsonl"), _pairs(d / "denoise_val.jsonl")
        return T.encode_corpus(vocab, s, t), T.encode_corpus(vocab, vs, vt)
    tr, va = read_examples(d / "train.jsonl"), read_examples(d / "val.jsonl")
    return (T.encode_corpus(vocab, [e.src for e in tr], [e.tgt for e in tr]),
            T.encode_corpus(vocab, [e.src for e in va], [e.tgt for e in va]))


def _batch_fn(ctx: Context, corpus: T.Corpus, batch_size: int, seed: int, counter: list[int] | None = None):
    """Global batch of ``batch_size`` (pure function of the step); this rank's slice of it.

    The core loop's per-step generator is not needed: the epoch permutations are already a
    function of (seed, step). ``counter[0]`` accumulates the global target tokens drawn.
    """
    world, rank = ctx.dist.world, ctx.dist.rank
    sampler = T.BatchSampler(len(corpus), batch_size, seed)

    def batch_fn(step: int, generator: torch.Generator | None = None) -> dict:
        idx = sampler(step)
        local = idx[rank::world]
        b = T.make_batch(corpus, local, ctx.device)
        n_global = sum(len(corpus.tgt[i]) + 1 for i in idx)
        b["norm"] = n_global / world
        b["step"] = step  # seeds the composed stage's samples
        if counter is not None:
            counter[0] += n_global
        return b
    return batch_fn


def train_config(ctx: Context, name: str, *, steps: int, lr: float, warmup: int, batch_size: int) -> TrainConfig:
    """The core loop's configuration of one stage: AdamW(0.9, 0.98), fairseq's inverse-sqrt
    schedule after a linear warm-up (paper §4.1), model selection on the validation metric."""
    c = ctx.cfg
    return TrainConfig(lr=lr, steps=steps, batch_size=batch_size, weight_decay=c.weight_decay, betas=(0.9, 0.98),
                       grad_clip=c.grad_clip, schedule="inverse_sqrt", warmup=warmup, eval_every=c.eval_every,
                       ckpt_every=c.eval_every, seed=derive_seed(c.seed, name, "train"), device=str(ctx.device),
                       select_metric="val_nll", select_mode="min")


def _fit(ctx: Context, name: str, model, loss_fn, corpus: T.Corpus, val: T.Corpus, *, steps: int, lr: float,
         warmup: int, batch_size: int, eval_fn=None, save=None) -> dict:
    """Train one stage with :func:`composedft.train.train` (through :func:`T.fit` for DDP) and
    save the selected model's weights (``save``: the module to save, default ``model``) to
    ``models/<name>.pt``. Only rank 0 evaluates and keeps ``stages/<name>/``; other ranks keep
    their own resume state in ``stages/<name>/rank<r>/``."""
    cfg, rank = ctx.cfg, ctx.dist.rank
    target = model if save is None else save
    if eval_fn is None:
        eval_fn = lambda m: {"val_nll": T.mean_nll(target, val, cfg.decode_batch_size, ctx.device)}  # noqa: E731
    tokens = [0]
    run_dir = ctx.rd / "stages" / name
    tc = train_config(ctx, name, steps=steps, lr=lr, warmup=warmup, batch_size=batch_size)
    res = T.fit(model, loss_fn, _batch_fn(ctx, corpus, batch_size, derive_seed(cfg.seed, name, "batches"), tokens),
                tc, eval_fn=eval_fn if rank == 0 else None, world=ctx.dist.world,
                run_dir=run_dir if rank == 0 else run_dir / f"rank{rank}")
    for h in res.history:
        ctx.log(f"  [{name}] step {int(h['step']):>6} train_loss={h['train_loss']:.4f} val_nll={h['val_nll']:.4f}")
    best = res.best_metric if res.best_metric is not None else float("nan")
    if rank == 0:
        save_checkpoint(ctx.rd / "models" / f"{name}.pt",
                        {"model": target.state_dict(), "best_val_nll": best, "best_step": res.best_step})
    barrier(ctx.dist)
    return {"steps": steps, "best_val_nll": round(best, 4), "best_step": res.best_step,
            "resumed_from": res.resumed_from, "train_tokens": tokens[0], "train_s": round(res.wall_s, 3),
            "tokens_per_s": tokens[0] / max(res.wall_s, 1e-9), "params": count_parameters(target)}


def _factory(ctx: Context, vocab: Vocab, name: str, denoiser: bool = False):
    """Builds an untrained model (seeded per stage) for :func:`composedft.compose.init_base_predictor`."""
    def make() -> Seq2SeqTransformer:
        torch.manual_seed(derive_seed(ctx.cfg.seed, name, "init"))
        return Seq2SeqTransformer(model_config(ctx.cfg, len(vocab), denoiser=denoiser)).to(ctx.device)
    return make


def _new_model(ctx: Context, vocab: Vocab, name: str, denoiser: bool = False) -> Seq2SeqTransformer:
    return init_base_predictor("random", factory=_factory(ctx, vocab, name, denoiser))


def _nll_loss(ls: float):
    return lambda model, batch: T.nll_loss(model, batch, label_smoothing=ls)


def _supervised_stage(ctx: Context, name: str, make_model, *, denoiser: bool = False):
    """The body shared by the three NLL-trained stages: skip when done, build the model, fit.

    ``make_model(vocab)`` builds the stage's initial model; steps, lr and warmup are the config's
    ``<name>_steps``, ``<name>_lr`` and ``<name>_warmup`` fields.
    """
    if (ctx.rd / "models" / f"{name}.pt").exists():
        return None
    vocab, c = _vocab(ctx), ctx.cfg
    corpus, val = _corpora(ctx, vocab, denoiser=denoiser)
    model = make_model(vocab)
    return _fit(ctx, name, model, _nll_loss(c.label_smoothing), corpus, val,
                steps=getattr(c, f"{name}_steps"), lr=getattr(c, f"{name}_lr"),
                warmup=getattr(c, f"{name}_warmup"), batch_size=c.batch_size)


def stage_denoiser(ctx: Context):
    """Π: pre-trained on (corrupt(y), y) pairs built from unlabeled programs only."""
    return _supervised_stage(ctx, "denoiser", lambda v: _new_model(ctx, v, "denoiser", denoiser=True),
                             denoiser=True)


def stage_direct(ctx: Context):
    """Direct: f from random initialisation, trained on the labeled pairs."""
    return _supervised_stage(ctx, "direct", lambda v: _new_model(ctx, v, "direct"))


def stage_standard(ctx: Context):
    """Standard fine-tuning: f initialised from Π's weights, every weight trained."""
    return _supervised_stage(ctx, "standard", lambda v: init_base_predictor(
        "denoiser", factory=_factory(ctx, v, "standard"),
        denoiser=_load_model(ctx, "denoiser", v, denoiser=True)))


def stage_composed(ctx: Context):
    """Composed fine-tuning: Π frozen; f (from Π or from the standard model) trained so Π∘f fits."""
    if (ctx.rd / "models" / "composed.pt").exists():
        return None
    vocab, c = _vocab(ctx), ctx.cfg
    corpus, val = _corpora(ctx, vocab, denoiser=False)
    denoiser = freeze(_load_model(ctx, "denoiser", vocab, denoiser=True))
    before = {k: v.clone() for k, v in denoiser.state_dict().items()}
    if c.composed_init == "denoiser":  # the paper: f starts as a copy of Π
        base_predictor = init_base_predictor("denoiser", factory=_factory(ctx, vocab, "composed"), denoiser=denoiser)
    else:  # the reference code: f starts from the standard fine-tuned model
        path = ctx.rd / "models" / "standard.pt"
        if not path.exists():
            raise RunFolderError(f"{path}: missing (run the 'standard' stage first)")
        base_predictor = init_base_predictor("checkpoint", factory=_factory(ctx, vocab, "composed"),
                                             checkpoint=path, key="model")
    model = Composed(base_predictor, denoiser)
    obj = T.ComposedObjective(k=c.composed_k, baseline=c.composed_baseline, lam=c.composed_lambda,
                              scale=c.composed_scale, length_normalize=c.composed_length_normalize,
                              label_smoothing=c.label_smoothing, max_len=_data_info(ctx)["max_decode_len"],
                              seed=derive_seed(c.seed, "composed", "samples"))

    def eval_fn(_model) -> dict:
        return {"val_nll": T.composed_val_nll(base_predictor, denoiser, val, obj.max_len, c.decode_batch_size,
                                              ctx.device)}

    info = _fit(ctx, "composed", model, lambda m, batch: T.composed_loss(m, batch, obj), corpus, val,
                steps=c.composed_steps, lr=c.composed_lr, warmup=c.composed_warmup,
                batch_size=c.composed_batch_size, eval_fn=eval_fn, save=base_predictor)
    unchanged = all(torch.equal(before[k], v) for k, v in denoiser.state_dict().items())
    if not unchanged:  # the core's freeze() guarantees this; a failure here is a bug, not noise
        raise RuntimeError("composed fine-tuning changed the frozen denoiser")
    return {**info, "composed_init": c.composed_init, "denoiser_unchanged": unchanged}


# ---- prediction and evaluation -------------------------------------------------------------------

def stage_predict(ctx: Context):
    """Greedy outputs of direct / standard / composed f, and Π applied to each (post hoc)."""
    out_dir = ctx.rd / "decoded"
    if (out_dir / "done.json").exists():
        return None
    c, vocab = ctx.cfg, _vocab(ctx)
    max_len = _data_info(ctx)["max_decode_len"]
    denoiser = _load_model(ctx, "denoiser", vocab, denoiser=True)
    n_dec, tok = 0, 0
    import time
    t0 = time.perf_counter()
    for split in SPLITS:
        examples = read_examples(ctx.rd / "data" / f"test_{split}.jsonl")
        srcs = [tuple(vocab.encode(e.src.split())) + (EOS,) for e in examples]
        for model_name in ("direct", "standard", "composed"):
            f = _load_model(ctx, model_name, vocab)
            base = T.translate(f, srcs, max_len, batch_size=c.decode_batch_size, beam=c.beam, device=ctx.device)
            post = T.translate(denoiser, [tuple(y) + (EOS,) for y in base], max_len, batch_size=c.decode_batch_size,
                               beam=c.beam, device=ctx.device)
            n_dec += 2 * len(srcs)
            tok += sum(len(y) + 1 for y in base) + sum(len(y) + 1 for y in post)
            for method, m, posthoc in METHODS:
                if m == model_name:
                    ys = post if posthoc else base
                    atomic_write_jsonl(out_dir / f"{method}_{split}.jsonl",
                                       [{"id": e.id, "tgt": " ".join(vocab.decode(y))} for e, y in zip(examples, ys)])
    secs = time.perf_counter() - t0
    atomic_write_json(out_dir / "done.json", {"max_decode_len": max_len, "sequences": n_dec})
    return {"sequences": n_dec, "decoded_tokens": tok, "tokens_per_s": tok / max(secs, 1e-9), "max_decode_len": max_len}


def _evaluate_unique(ev, jobs: dict[str, dict[str, str]], examples: list[Example]) -> dict[str, tuple[list[dict], dict]]:
    """Evaluate every method's predictions on one split, running each distinct (example, code)
    pair once, in one worker pool.

    Methods often emit the same program for an example (post hoc Π leaves correct code alone;
    composed f starts from standard f), and a verdict depends only on the code and the
    example's test cases, so one run per distinct pair gives every method's records exactly.
    Returns ``{method: (records, summary)}`` as :meth:`Evaluator.evaluate` would.
    """
    import dataclasses
    import time

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

    Per split, identical programs of different methods are run once (:func:`_evaluate_unique`);
    binaries are also cached by source hash across runs (:mod:`.evaluator`).
    """
    from .evaluator import Evaluator

    c = ctx.cfg
    ev = Evaluator(workers=c.eval_workers or None, time_limit_s=c.time_limit_s)
    rows, n_prog, n_run = [], 0, 0
    for split in SPLITS:
        examples = read_examples(ctx.rd / "data" / f"test_{split}.jsonl")
        jobs, tgts = {}, {}
        for method, _, _ in METHODS:
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
        results = _evaluate_unique(ev, jobs, examples) if jobs else {}
        for method, (records, summary) in results.items():
            codes = jobs[method]
            atomic_write_jsonl(ctx.rd / "predictions" / f"{method}_{split}.jsonl",
                               [{"id": r["id"], "code": codes.get(r["id"], ""), "status": r["status"],
                                 "tgt": tgts[method].get(r["id"], ""), "detail": r.get("detail", "")[:300]}
                                for r in records])
            atomic_write_json(ctx.rd / "eval" / f"{method}_{split}.json", summary)
            n_prog += summary["n"]
        n_run += next(iter(results.values()))[1]["distinct_programs_run"] if results else 0
        for method, _, _ in METHODS:
            summary = read_json(ctx.rd / "eval" / f"{method}_{split}.json")
            rows.append({"method": method, "split": split, "exec_acc": round(summary["exec_acc"], 4),
                         "compile_rate": round(summary["compile_rate"], 4), "n": summary["n"], "seed": c.seed,
                         "dataset": c.dataset, "composed_init": c.composed_init,
                         **{k: summary["counts"][k] for k in ("compile_error", "runtime_error", "wrong_answer", "timeout")}})
    atomic_write_csv(ctx.rd / "results.csv", rows)
    return {"programs_evaluated": n_prog, "distinct_programs_run": n_run, "rows": rows}
