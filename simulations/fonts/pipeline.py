"""One run of the font experiment, end to end and resumable (docs/fonts.md §4)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from composedft.config import ConfigError, cfg_to_dict
from composedft.devices import resolve_device
from composedft.io import read_json
from composedft.runs import RunDir

from .config import FontsConfig
from .data import load_fonts
from .stages import evaluate, finetune_method, make_tensors, method_spec, pretrain_denoiser, sample_indices, split_for

__all__ = ["run", "check_run_folder"]

# fields that may differ when a run folder is resumed (they do not change the numbers on one device)
_FREE_FIELDS = {"device", "threads", "n_figure", "cache_dir"}


def check_run_folder(cfg: FontsConfig, out: Path) -> None:
    """Refuse to resume a folder written under a different config (names the first field that differs)."""
    path = out / "config.json"
    if not path.exists():
        return
    old, new = read_json(path), cfg_to_dict(cfg)
    for key, value in new.items():
        if key not in _FREE_FIELDS and key in old and old[key] != value:
            raise ConfigError(f"{path}: this folder was made with {key}={old[key]!r}, now {key}={value!r}; "
                              "use another --out to run a different config")


def run(cfg: FontsConfig, out: str | Path, log=print) -> list[dict[str, Any]]:
    """Render the fonts, pre-train Π, fine-tune each method, evaluate; write results.csv.

    Raises:
        ConfigError: the folder holds a run of another config.
        ValueError / FileNotFoundError: not enough usable fonts, a missing font folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    check_run_folder(cfg, out)
    run_dir = RunDir(out)
    run_dir.write_config(cfg)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    t0 = time.time()
    fonts = load_fonts(cfg)
    for note in fonts.notes:
        log(f"[fonts] {note}")
    split = split_for(fonts, cfg)
    data = make_tensors(fonts, split)
    log(f"[fonts] {len(fonts.paths)} usable fonts: {len(split.labeled)} labeled, {len(split.unlabeled)} unlabeled; "
        f"pairs train {len(split.train)} / val {len(split.val)} / test {len(split.test)}; "
        f"denoiser pool {len(data.denoiser_pool)} images")
    t = time.time()
    denoiser, dstats = pretrain_denoiser(cfg, data, out / "denoiser")
    times = {"render_s": round(t - t0, 2), "denoiser_s": round(time.time() - t, 2)}
    log(f"[fonts] denoiser: blurred val MSE {dstats['blurred_val_mse']:.4f} -> {dstats['denoised_val_mse']:.4f} "
        f"({times['denoiser_s']:.0f}s)")
    trained = {}
    for name in dict.fromkeys(method_spec(m).reuse or m for m in cfg.methods):
        t = time.time()
        trained[name] = finetune_method(cfg, name, data, denoiser, out / name)
        times[f"{name}_s"] = round(time.time() - t, 2)
        log(f"[fonts] {name}: selected step {trained[name][1]} ({times[f'{name}_s']:.0f}s)")
    rows = evaluate(cfg, data, denoiser, trained, out, sample_indices(cfg, len(split.test)))
    for r in rows:
        if r["split"] == "test":
            log(f"[fonts] test mse {r['method']:15s} {r['mse']:.4f}   f_norm {r['f_norm']:.1f}")
    run_dir.write_manifest(seed=cfg.seed, device=resolve_device(cfg.device), extra={
        "experiment": "fonts", "fonts": list(fonts.paths), "skipped": list(fonts.notes),
        "labeled_fonts": [fonts.paths[i] for i in split.labeled], "denoiser": dstats, "stage_times_s": times,
        "torch_threads": torch.get_num_threads()})
    log(f"[fonts] wrote {out / 'results.csv'} ({time.time() - t0:.1f}s)")
    return rows
