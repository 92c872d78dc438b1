"""``python -m simulations.relu --preset {smoke,quick,full} --out DIR [--field=value ...]``.

Writes ``DIR/results.csv`` (one row per method x seed x setting), ``DIR/curves.npz`` (Figure-1
data), ``DIR/config.json`` and ``DIR/manifest.json``; re-running resumes an interrupted sweep.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from composedft.config import ConfigError, describe_fields, parse_config
from composedft.io import DataFileError
from composedft.runs import RunDir
from composedft.seeding import seed_everything

from .config import PRESETS, ReluConfig, validate
from .sweep import plan, run_sweep

USAGE = "usage: python -m simulations.relu [--preset {smoke,quick,full}] --out DIR [--field=value ...]"


def main(argv: list[str] | None = None) -> int:
    extra = argparse.ArgumentParser(add_help=False)
    extra.add_argument("--out", help="output folder")
    extra.add_argument("--help", "-h", action="store_true")
    try:
        cfg, ns = parse_config(ReluConfig, PRESETS, argv, prog="python -m simulations.relu",
                               default_preset="quick", extra=extra)
        validate(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if ns.help:
        print(f"{USAGE}\npresets: {', '.join(PRESETS)}\nfields (values of this preset; "
              f"see simulations/relu/config.py for their meaning):\n{describe_fields(cfg)}")
        return 0
    if not ns.out:
        print(f"{USAGE}\nerror: --out is required", file=sys.stderr)
        return 2
    torch.set_default_dtype(torch.float64)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(0)
    run = RunDir(ns.out)
    run.write_config(cfg)
    t0 = time.time()
    try:
        results = run_sweep(cfg, run.path)
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    groups = plan(cfg)
    run.write_manifest(seed=list(range(cfg.seeds)), device="cpu", extra={
        "experiment": "relu", "sweep_wall_time_s": round(time.time() - t0, 3),
        "groups": {axis: len(s) for axis, s in groups}, "torch_threads": torch.get_num_threads(),
        "denoiser": "two-layer ReLU, knot-grid least squares then Adam (train.knot_grid_fit)",
    })
    print(f"[relu] wrote {results} ({time.time() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
