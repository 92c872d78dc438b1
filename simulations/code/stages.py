"""The pipeline's training stages (see :mod:`simulations.code.pipeline`): the denoiser Π, then
one stage per trained method of the core registry (:mod:`composedft.methods`), all through the
core training loop. This module implements the registry's objectives for token sequences:

    standard        token NLL (direct, standard, bt)
    composed        the score-function composed loss through the frozen Π + λ NLL (composed, ...)
    smart           standard + λ_s SMART smoothness term on f's source embeddings (smart)
    composed+smart  composed + the same term on f (composed+smart)

on the corpus the method's ``data`` names (the labeled pairs; for ``bt`` those followed by the
back-translated pairs of the ``backtranslate`` stage, :mod:`.stage_bt`), and the registry's
inits: random, Π's weights, or another method's saved f. A method's step, learning-rate and
warm-up fields are ``<method>_steps`` etc. when the config has them, else
those of its objective (``composed_steps`` for every composed-objective method, ``bt+composed``
included; ``bt`` has its own ``bt_*``).

Each returns timing info, or None when its output already exists (so re-running a command
resumes where it stopped; an interrupted stage resumes from its checkpoint in ``stages/<name>/``).
The data stages live in :mod:`.stage_data`, prediction and evaluation in :mod:`.stage_eval`.
"""
from __future__ import annotations

import torch

from composedft.compose import freeze, init_base_predictor
from composedft.io import CheckpointError
from composedft.methods import (BASE_INITS, get_method, make_base_predictor, resolve_init, training_phases,
                                with_dependencies)
from composedft.seeding import derive_seed
from composedft.sequence import ComposedSequence
from composedft.smart import SmartConfig
from composedft.train import TrainConfig

from . import composed as C
from . import seq2seq_train as T
from .augment import augment_pairs
from .config import model_config, stage_seed
from .context import Context, RunFolderError, barrier, read_examples
from .composed_select import train_over_grid
from .exec_acc import val_exec_scorer
from .model import Seq2SeqTransformer, count_parameters
from .stage_data import load_tokenizer, read_pairs, source_text, tokenizer_info

BT_PAIRS = "bt_pairs.jsonl"  # data/: the backtranslate stage's (g(y), y) pairs (stage_bt.py)

def trained_methods(cfg) -> tuple[str, ...]:
    """The methods that train an f for ``cfg.methods`` (theirs, and those they reuse or start from),
    in an order where a method starting from another's f comes after it."""
    return tuple(n for phase in training_phases(with_dependencies(cfg.methods, cfg), cfg) for n in phase)


def training_stages(cfg) -> tuple[str, ...]:
    """The stages that train (every DDP rank runs them): Π, the reverse model of back-translation
    when a method needs its pairs (:mod:`.stage_bt`), then the methods."""
    return ("denoiser", *(("backtranslate",) if cfg.needs_backtranslation() else ()), *trained_methods(cfg))


def load_model(ctx: Context, name: str, vocab, denoiser: bool = False) -> Seq2SeqTransformer:
    """The weights a stage saved in ``models/<name>.pt``, on the run's device; a missing file or one
    of another configuration (e.g. another vocabulary size) raises naming it."""
    path = ctx.rd.model_path(name)
    if not path.exists():
        raise RunFolderError(f"{path}: missing (run the '{name}' stage first)")
    ck = ctx.rd.load_model(name)
    model = Seq2SeqTransformer(model_config(ctx.cfg, len(vocab), denoiser=denoiser))
    try:
        model.load_state_dict(ck["model"])
    except (KeyError, RuntimeError) as err:
        raise CheckpointError(f"{path}: does not hold this configuration's model ({str(err).splitlines()[0]})") from None
    return model.to(ctx.device)


def corpora(ctx: Context, vocab, denoiser: bool, data: str = "labeled") -> tuple[T.Corpus, T.Corpus]:
    """(train, val) corpora of a stage, encoded with the run's tokenizer ``vocab``: the denoiser's
    (corrupt(y), y) pairs, or the labeled (pseudocode, code) pairs, followed, for a method with
    ``data="labeled+bt"`` (composedft.methods), by the back-translated pairs of ``data/bt_pairs.jsonl``.
    With ``augment_renames`` the training pairs are followed by renamed copies (:mod:`.augment`).
    Validation is always the labeled val split, never augmented."""
    d = ctx.rd.data_dir
    if denoiser:
        (s, t), (vs, vt) = read_pairs(d / "denoise_train.jsonl"), read_pairs(d / "denoise_val.jsonl")
        return T.encode_corpus(vocab, s, t), T.encode_corpus(vocab, vs, vt)
    tr, va = read_examples(d / "train.jsonl"), read_examples(d / "val.jsonl")
    srcs, tgts = [e.src for e in tr], [e.tgt for e in tr]
    if data == "labeled+bt":
        if not (d / BT_PAIRS).exists():
            raise RunFolderError(f"{d / BT_PAIRS}: missing (run the 'backtranslate' stage first)")
        bs, bt = read_pairs(d / BT_PAIRS)
        srcs, tgts = srcs + bs, tgts + bt
    elif data != "labeled":
        raise ValueError(f"data '{data}' is not built by the code pipeline")
    if ctx.cfg.augment_renames:
        srcs, tgts = augment_pairs(srcs, tgts, ctx.cfg.augment_renames, derive_seed(ctx.cfg.seed, "augment"))
    src_of = lambda text: source_text(ctx.cfg, text)  # noqa: E731
    return (T.encode_corpus(vocab, [src_of(x) for x in srcs], tgts),
            T.encode_corpus(vocab, [src_of(e.src) for e in va], [e.tgt for e in va]))


def batch_fn_for(ctx: Context, corpus: T.Corpus, batch_size: int, seed: int, counter: list[int] | None = None,
                 window: int = T.DEFAULT_WINDOW):
    """Global batch of ``batch_size`` (pure function of the step); this rank's slice of it.

    Batches are length-bucketed (:class:`T.BatchSampler`, docs/training-speed.md §1): similar
    lengths together in sorted windows of ``window`` batches, so less padding is computed
    (``window=0``: uniformly random batches). The core loop's per-step generator is not
    needed: the epoch arrangements are already a function of (seed, step). ``counter[0]``
    accumulates the global target tokens drawn.
    """
    world, rank = ctx.dist.world, ctx.dist.rank
    sampler = (T.BatchSampler(len(corpus), batch_size, seed) if window == 0 else
               T.BatchSampler(len(corpus), batch_size, seed, lengths=T.corpus_lengths(corpus), window=window))

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


def train_config(ctx: Context, name: str, *, steps: int, lr: float, warmup: int, batch_size: int,
                 select_metric: str = "val_nll") -> TrainConfig:
    """The core loop's configuration of one stage: AdamW(0.9, 0.98), fairseq's inverse-sqrt
    schedule after a linear warm-up (docs/experiments.md §3.3), model selection on the validation
    metric (``val_nll``, lower is better, or ``val_exec``, higher is better)."""
    c = ctx.cfg
    return TrainConfig(lr=lr, steps=steps, batch_size=batch_size, weight_decay=c.weight_decay, betas=(0.9, 0.98),
                       grad_clip=c.grad_clip, schedule="inverse_sqrt", warmup=warmup, eval_every=c.eval_every,
                       ckpt_every=c.eval_every, seed=derive_seed(stage_seed(c, name), name, "train"), device=str(ctx.device),
                       select_metric=select_metric, select_mode="max" if select_metric == "val_exec" else "min",
                       patience=0 if name == "denoiser" else c.patience)  # Π trains its fixed budget


def fit_stage(ctx: Context, name: str, model, loss_fn, corpus: T.Corpus, val: T.Corpus, *, steps: int, lr: float,
         warmup: int, batch_size: int, eval_fn=None, save=None, select_metric: str = "val_nll",
         store: str = "") -> dict:
    """Train one stage with :func:`composedft.train.train` (through :func:`T.fit` for DDP) and
    save the selected model's weights (``save``: the module to save, default ``model``) to
    ``models/<store>.pt``. Only rank 0 evaluates and keeps ``stages/<store>/``; other ranks keep
    their own resume state in ``stages/<store>/rank<r>/``. ``store`` defaults to ``name``; the
    seeds always come from ``name`` (the candidates of a learning-rate grid share them)."""
    cfg, rank = ctx.cfg, ctx.dist.rank
    store = store or name
    target = model if save is None else save
    if eval_fn is None:
        eval_fn = lambda m: {"val_nll": T.mean_nll(target, val, cfg.decode_batch_size, ctx.device, cfg.amp)}  # noqa: E731
    tokens = [0]
    run_dir = ctx.rd.stage_dir(store)
    tc = train_config(ctx, name, steps=steps, lr=lr, warmup=warmup, batch_size=batch_size, select_metric=select_metric)
    window = T.DEFAULT_WINDOW if name == "denoiser" else cfg.bucket_window  # Π's corpus spans many windows
    res = T.fit(model, loss_fn, batch_fn_for(ctx, corpus, batch_size, derive_seed(stage_seed(cfg, name), name, "batches"),
                                             tokens, window),
                tc, eval_fn=eval_fn if rank == 0 else None, world=ctx.dist.world,
                run_dir=run_dir if rank == 0 else run_dir / f"rank{rank}")
    for h in res.history:
        ctx.log(f"  [{store}] step {int(h['step']):>6} train_loss={h['train_loss']:.4f} val_nll={h['val_nll']:.4f}"
                + (f" val_exec={h['val_exec']:.3f}" if "val_exec" in h else ""))
    # the selected evaluation's val NLL, whatever selected it
    sel = next((h for h in res.history if h["step"] == res.best_step), None)
    best = sel["val_nll"] if sel is not None else float("nan")
    if rank == 0:
        ctx.rd.save_model(store, {"model": target.state_dict(), "best_val_nll": best, "best_step": res.best_step})
    barrier(ctx.dist)
    extra = {"best_val_exec": round(sel["val_exec"], 4)} if sel is not None and "val_exec" in sel else {}
    return {"steps": steps, "steps_run": res.step, "stopped_early": res.stopped_early,
            "best_val_nll": round(best, 4), "best_step": res.best_step, **extra,
            "resumed_from": res.resumed_from, "train_tokens": tokens[0], "train_s": round(res.wall_s, 3),
            "tokens_per_s": tokens[0] / max(res.wall_s, 1e-9), "params": count_parameters(target)}


def _exec_eval_fn(ctx: Context, vocab, f, val: T.Corpus):
    """Validation of a ``select_on="exec"`` stage: val token NLL and val greedy execution accuracy
    (:func:`.exec_acc.val_exec_scorer`)."""
    c, score = ctx.cfg, val_exec_scorer(ctx, vocab)

    def eval_fn(_model) -> dict:
        return {"val_nll": T.mean_nll(f, val, c.decode_batch_size, ctx.device, c.amp), "val_exec": score(f)}
    return eval_fn


def _factory(ctx: Context, vocab, name: str, denoiser: bool = False):
    """Builds an untrained model (seeded per stage) for :func:`composedft.compose.init_base_predictor`."""
    def make() -> Seq2SeqTransformer:
        torch.manual_seed(derive_seed(stage_seed(ctx.cfg, name), name, "init"))
        return Seq2SeqTransformer(model_config(ctx.cfg, len(vocab), denoiser=denoiser)).to(ctx.device)
    return make


def new_model(ctx: Context, vocab, name: str, denoiser: bool = False) -> Seq2SeqTransformer:
    """A randomly initialised model of stage ``name`` (seeded by the run seed and the name)."""
    return init_base_predictor("random", factory=_factory(ctx, vocab, name, denoiser))


def nll_loss_fn(ls: float, amp: bool = True):
    """The loss of the NLL-trained stages (label smoothing ``ls``; ``amp``: bf16 autocast on CUDA)."""
    return lambda model, batch: T.nll_loss(model, batch, label_smoothing=ls, amp=amp)


def _hyper(cfg, name: str, objective: str) -> dict:
    """steps / lr / warmup of a method: its own ``<name>_*`` fields, else its objective's (a SMART
    variant uses its base objective's: smart -> standard, composed+smart -> composed)."""
    base = {"smart": "standard", "composed+smart": "composed"}.get(objective, objective)
    prefix = name if hasattr(cfg, f"{name}_steps") else base
    return {k: getattr(cfg, f"{prefix}_{k}") for k in ("steps", "lr", "warmup")}


def _initial_f(ctx: Context, vocab, name: str, init: str, denoiser=None) -> Seq2SeqTransformer:
    """f of method ``name`` before training (:func:`composedft.methods.make_base_predictor`): random,
    a copy of Π, or the saved f of the method ``init`` names."""
    path = None
    if init not in BASE_INITS:
        path = ctx.rd.model_path(init)
        if not path.exists():
            raise RunFolderError(f"{path}: missing (method '{name}' starts from '{init}': run its stage first)")
    if init == "denoiser" and denoiser is None:
        denoiser = load_model(ctx, "denoiser", vocab, denoiser=True)
    return make_base_predictor(name, factory=_factory(ctx, vocab, name), denoiser=denoiser, checkpoint=path,
                               key="model", cfg=ctx.cfg)


def stage_denoiser(ctx: Context):
    """Π: pre-trained on (corrupt(y), y) pairs built from unlabeled programs only."""
    if ctx.rd.model_path("denoiser").exists():
        return None
    vocab, c = load_tokenizer(ctx), ctx.cfg
    corpus, val = corpora(ctx, vocab, denoiser=True)
    return fit_stage(ctx, "denoiser", new_model(ctx, vocab, "denoiser", denoiser=True),
                     nll_loss_fn(c.label_smoothing, c.amp), corpus, val, steps=c.denoiser_steps, lr=c.denoiser_lr,
                     warmup=c.denoiser_warmup, batch_size=c.batch_size)


def stage_method(ctx: Context, name: str):
    """Train method ``name`` of the registry: its init, then its objective (module docstring)."""
    if ctx.rd.model_path(name).exists():
        return None
    m, c = get_method(name), ctx.cfg  # CodeConfig.validate checked that m.objective is in config.CODE_OBJECTIVES
    init, hp = resolve_init(m, c), _hyper(c, name, m.objective)
    vocab = load_tokenizer(ctx)
    corpus, val = corpora(ctx, vocab, denoiser=False, data=m.data)  # bt: labeled + back-translated
    with_smart = m.objective.endswith("smart")
    scfg = SmartConfig(eps=c.smart_eps, init_std=c.smart_eps, step_size=c.smart_step, lambda_s=c.smart_lambda, mu=0.0)
    smart_seed = derive_seed(c.seed, name, "smart")
    if m.objective in ("standard", "smart"):
        nll = nll_loss_fn(c.label_smoothing, c.amp)
        loss_fn = nll if not with_smart else (
            lambda f, batch: nll(f, batch) + scfg.lambda_s * T.smart_term(f, batch, scfg, smart_seed, amp=c.amp))
        f = _initial_f(ctx, vocab, name, init)
        eval_fn, metric = (None, "val_nll") if c.select_on == "nll" else (_exec_eval_fn(ctx, vocab, f, val), "val_exec")
        return fit_stage(ctx, name, f, loss_fn, corpus, val, batch_size=c.batch_size, eval_fn=eval_fn,
                         select_metric=metric, **hp)
    denoiser = freeze(load_model(ctx, "denoiser", vocab, denoiser=True))
    before = {k: v.clone() for k, v in denoiser.state_dict().items()}

    def train_one(lr: float, store: str) -> dict | None:
        if ctx.rd.model_path(store).exists():
            return None
        return _fit_composed(ctx, name, vocab, denoiser, init, corpus, val, with_smart, scfg, smart_seed,
                             {**hp, "lr": lr}, store)

    if c.composed_lr_grid:
        info = train_over_grid(ctx, name, vocab, denoiser, train_one, lambda store: load_model(ctx, store, vocab))
    else:
        info = train_one(hp["lr"], name)
    unchanged = all(torch.equal(before[k], v) for k, v in denoiser.state_dict().items())
    if not unchanged:  # the core's freeze() guarantees this; a failure here is a bug, not noise
        raise RuntimeError(f"method '{name}' changed the frozen denoiser")
    return {**info, "init": init, "denoiser_unchanged": unchanged}


def _fit_composed(ctx: Context, name: str, vocab, denoiser, init: str, corpus, val, with_smart: bool, scfg,
                  smart_seed: int, hp: dict, store: str) -> dict:
    """One composed-objective training of method ``name`` (f from ``init``, Π frozen) at ``hp``,
    saved as ``models/<store>.pt``."""
    c = ctx.cfg
    base_predictor = _initial_f(ctx, vocab, name, init, denoiser)
    model = ComposedSequence(base_predictor, denoiser)
    obj = C.ComposedObjective(estimator=c.composed_estimator, k=c.composed_k, baseline=c.composed_baseline, lam=c.composed_lambda,
                              scale=c.composed_scale, length_normalize=c.composed_length_normalize,
                              label_smoothing=c.label_smoothing, max_len=tokenizer_info(ctx)["max_decode_len"],
                              cap_factor=c.max_len_factor, seed=derive_seed(c.seed, name, "samples"),
                              amp=c.amp)

    def eval_fn(_model) -> dict:
        return {"val_nll": C.composed_val_nll(model, val, obj.max_len, c.decode_batch_size, ctx.device, c.amp)}

    def loss_fn(mod, batch):
        loss, stats = C.composed_loss(mod, batch, obj)
        if with_smart:
            loss = loss + scfg.lambda_s * T.smart_term(mod.base_predictor, batch, scfg, smart_seed, amp=c.amp)
        return loss, stats

    return fit_stage(ctx, name, model, loss_fn, corpus, val, batch_size=c.composed_batch_size, eval_fn=eval_fn,
                     save=base_predictor, store=store, **hp)
