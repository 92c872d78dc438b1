"""``python -m simulations.code run``: the pseudocode-to-code pipeline, stage by stage.

Stages (each resumable; all write into one run folder ``--out DIR``):

1. ``data``      labeled / val / ID test / OOD test examples and denoiser pairs -> ``data/``
2. ``vocab``     joint src+tgt tokenizer (BPE) -> ``tokenizer.model``, ``tokenizer.json`` (<unk> rates)
3. ``denoiser``  Π pre-trained on (corrupt(y), y)                      -> ``models/denoiser.pt``
   ``backtranslate`` only for a method trained on back-translated pairs (``bt``): reverse model
                 g (code -> pseudocode) -> ``models/bt-reverse.pt``; (g(y), y) -> ``data/bt_pairs.jsonl``
4. one stage per trained method of ``--methods`` (registry :mod:`composedft.methods`, in an order
   where a method starting from another's f comes after it), by default
   ``direct``    f from random init on labeled data                    -> ``models/direct.pt``
   ``standard``  f initialised from Π, all weights fine-tuned          -> ``models/standard.pt``
   ``composed``  f trained through the frozen Π (score function + λ NLL) -> ``models/composed.pt``
5. ``predict``   greedy outputs of every method (f, or Π applied to f)  -> ``decoded/``
6. ``evaluate``  compile + run on ID and OOD -> ``predictions/*.jsonl``, ``verdicts.csv``, ``results.csv``

``manifest.json`` records wall time and tokens/s per stage. A stage whose output exists is
skipped; an interrupted training stage resumes from its last checkpoint in ``stages/<name>/``.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time

import torch

from composedft.config import ConfigError, cfg_to_dict, describe_fields, parse_config
from composedft.devices import device_description, resolve_device
from composedft.io import CheckpointError, DataFileError
from composedft.runs import RunDir

from .config import PRESETS, CodeConfig, completed_config
from .context import (RESUME_FREE_FIELDS, Context, RunFolderError, barrier, cleanup_distributed,
                      init_distributed)
from .shared import copy_pretraining
from .stage_bt import stage_backtranslate
from .stage_data import stage_data, stage_vocab
from .stage_eval import stage_evaluate, stage_predict
from .stages import stage_denoiser, stage_method, training_stages

__all__ = ["add_parser", "main", "run", "stages_for"]

# fixed stages: name -> function(ctx) -> timing info, or None when its output already exists
FIXED_STAGES = {"data": stage_data, "vocab": stage_vocab, "denoiser": stage_denoiser,
                "backtranslate": stage_backtranslate, "predict": stage_predict, "evaluate": stage_evaluate}


def stages_for(cfg: CodeConfig) -> tuple[str, ...]:
    """The stages of a run in order: data, vocab, denoiser, backtranslate (when a method needs it),
    the trained methods, predict, evaluate."""
    return ("data", "vocab", *training_stages(cfg), "predict", "evaluate")


def run_stage(ctx: Context, name: str):
    return FIXED_STAGES[name](ctx) if name in FIXED_STAGES else stage_method(ctx, name)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``run`` on an argparse sub-command set (``python -m simulations.code run ...``).

    The sub-parser takes every remaining token verbatim (``prefix_chars='+'``) so that the
    ``--field=value`` overrides of :class:`CodeConfig` reach :func:`parse_config` untouched.
    """
    p = subparsers.add_parser("run", prefix_chars="+", add_help=False,
                              help="run the pseudocode-to-code pipeline (--preset toy|sanstype-paper|spoc-paper --out DIR)")
    p.add_argument("argv", nargs="*")
    p.set_defaults(func=main)
    return p


def _own_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--out", required=False, help="run folder")
    p.add_argument("--stages", default="all", help="comma-separated subset of the run's stages (default all: "
                   "data,vocab,denoiser,<each trained method>,predict,evaluate)")
    p.add_argument("--shared-from", default="", metavar="DIR",
                   help="copy data, tokenizer and denoiser from DIR, a run of the same configuration with "
                        "shared_pretraining=true and another seed (simulations/code/shared.py)")
    p.add_argument("--help", "-h", action="store_true")
    return p


def main(args=None) -> int:
    """Entry point: ``args`` is the namespace from :func:`add_parser` or a list of strings."""
    argv = list(getattr(args, "argv", args) or []) if args is not None else sys.argv[1:]
    try:
        cfg, ns = parse_config(CodeConfig, PRESETS, argv, prog="python -m simulations.code run",
                               default_preset="toy", extra=_own_options())
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ns.help or not ns.out:
        print(__doc__)
        print("usage: python -m simulations.code run --preset {" + ",".join(PRESETS) + "} --out DIR "
              "[--stages a,b] [--field=value ...]\nfields (values of this preset):\n" + describe_fields(cfg))
        return 0 if ns.help else 2
    all_stages = stages_for(cfg)
    stages = all_stages if ns.stages == "all" else tuple(s.strip() for s in ns.stages.split(","))
    unknown = [s for s in stages if s not in all_stages]
    if unknown:
        print(f"error: unknown stage(s) {unknown}; choose from {', '.join(all_stages)}", file=sys.stderr)
        return 2
    try:
        rows = run(cfg, ns.out, stages, shared_from=ns.shared_from)
    except (ConfigError, DataFileError, CheckpointError, RunFolderError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if rows:
        print(format_table(rows))
    return 0


def format_table(rows: list[dict]) -> str:
    lines = [f"{'method':<18} {'split':<5} {'exec_acc':>8} {'compile':>8} {'n':>5}"]
    for r in rows:
        lines.append(f"{r['method']:<18} {r['split']:<5} {float(r['exec_acc']):>8.3f} "
                     f"{float(r['compile_rate']):>8.3f} {int(r['n']):>5}")
    return "\n".join(lines)


def _check_config(rd: RunDir, cfg: CodeConfig) -> None:
    """A run folder belongs to one configuration: refuse to mix results of two."""
    path = rd.config_path
    if path.exists():
        old = rd.read_config()
        new = cfg_to_dict(cfg)
        old = completed_config(old)  # fields added after the folder was made
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k)
                      and k not in RESUME_FREE_FIELDS)
        if diff:
            raise RunFolderError(f"{path}: the run folder was made with a different configuration "
                                 f"(fields {', '.join(diff)}); use a new --out or the same fields")
    rd.write_config(cfg)


def _record_stages(rd: RunDir, cfg: CodeConfig, device, timings: dict, **extra) -> None:
    """Merge this invocation's stage records into ``manifest.json`` under a lock: two invocations
    may train different stages of one run folder side by side (e.g. ``--stages standard`` and
    ``--stages direct``), and each must keep the other's records."""
    with open(rd.path / ".manifest.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        stages = {**rd.read_manifest().get("stages", {}), **timings}
        rd.write_manifest(seed=cfg.seed, device=device_description(device),
                          extra={"stages": stages, "preset_fields": cfg_to_dict(cfg),
                                 "total_stage_wall_s": round(sum(v.get("wall_s", 0) for v in stages.values()), 3),
                                 **extra})


def run(cfg: CodeConfig, out: str | os.PathLike, stages=None, shared_from: str | os.PathLike = "") -> list[dict]:
    """Run ``stages`` into ``out``; returns the rows of ``results.csv`` (empty if not evaluated).
    ``shared_from``: a run folder whose pre-training outputs are copied first (:mod:`.shared`)."""
    t_start = time.time()
    stages = stages_for(cfg) if stages is None else stages
    training = training_stages(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if cfg.amp and device.type != "cuda":
        print(f"note: amp=True has no effect on {device.type} (bf16 autocast is CUDA only; float32 here)", flush=True)
    dist = init_distributed(device)
    if dist.world > 1 and cfg.patience:  # only rank 0 validates: the ranks would stop at different steps
        cleanup_distributed(dist)
        raise ConfigError("field 'patience': early stopping is not supported under torchrun (set patience=0)")
    rd = RunDir(out)
    if dist.rank == 0:
        _check_config(rd, cfg)
    ctx = Context(cfg=cfg, rd=rd, device=device, dist=dist)
    timings: dict = {}  # the stages this invocation ran (or copied); merged into the manifest's
    if shared_from and dist.rank == 0:
        copied = copy_pretraining(shared_from, rd, cfg)
        timings.update(copied)
        if copied:
            print(f"[data, vocab, denoiser] copied from {shared_from}", flush=True)
            # recorded at once: a run stopped before its first stage ends must still say where Π came from
            _record_stages(rd, cfg, device, timings)
    barrier(dist)
    rows: list[dict] = []
    for name in stages:
        if dist.world > 1 and name not in training and dist.rank != 0:
            barrier(dist)
            continue
        t0 = time.time()
        info = run_stage(ctx, name)
        if dist.world > 1 and name not in training:
            barrier(dist)
        if info is None:  # skipped: done earlier
            print(f"[{name}] done already, skipped", flush=True)
            continue
        info["wall_s"] = round(time.time() - t0, 3)
        timings[name] = info
        print(f"[{name}] {info['wall_s']:.1f}s" + (f", {info['tokens_per_s']:,.0f} tokens/s" if info.get("tokens_per_s") else ""),
              flush=True)
        if name == "evaluate":
            rows = info.pop("rows")
        if dist.rank == 0:
            _record_stages(rd, cfg, device, timings)
    if dist.rank == 0:
        _record_stages(rd, cfg, device, timings, this_invocation_wall_s=round(time.time() - t_start, 3))
    if not rows and rd.results_path.exists() and "evaluate" in stages:
        rows = rd.read_results()
    cleanup_distributed(dist)
    return rows
