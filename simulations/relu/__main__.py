"""``python -m simulations.relu --preset {smoke,quick,full} --out DIR [--field=value ...]``.

Writes ``DIR/results.csv`` (one row per method x seed x setting), ``DIR/curves.npz`` (Figure-1
data), ``DIR/config.json`` and ``DIR/manifest.json``; re-running resumes an interrupted sweep.
"""
from __future__ import annotations

import sys
import time

import torch

from composedft.config import parse_experiment_cli
from composedft.io import DataFileError
from composedft.runs import RunDir
from composedft.seeding import seed_everything

from .config import PRESETS, ReluConfig, validate
from .sweep import plan, run_sweep

def main(argv: list[str] | None = None) -> int:
    parsed = parse_experiment_cli(ReluConfig, PRESETS, argv, prog="python -m simulations.relu",
                                  default_preset="quick", source="simulations/relu/config.py", validate=validate)
    if isinstance(parsed, int):
        return parsed
    cfg, out = parsed
    torch.set_default_dtype(torch.float64)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    seed_everything(0)
    run = RunDir(out)
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
