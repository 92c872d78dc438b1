"""Run folders: one layout, with public readers and writers for every artifact.

A run folder holds (docs/data-formats.md describes each file):

    config.json                 the resolved configuration           write_config / read_config
    manifest.json               how the result was made              write_manifest / read_manifest
    results.csv                 the result rows                      write_results / read_results
    <name> (tokenizer.model...) vocabulary or tokenizer files        tokenizer_path(name)
    data/<name>                 the run's own data splits            data_path(name), data_dir
    models/<name>.pt            trained models (final/best)          save_model / load_model / model_path
    stages/<name>/              a training stage's resumable state   stage_dir(name)
    predictions/<m>_<split>.jsonl  predictions of method m           write_predictions / read_predictions

A manifest records what a reviewer needs to trust a number: package and library versions, the
git commit (and whether the tree was dirty), the device, the seed(s), the command line and the
wall time. Experiments reach these through the methods below; their own intermediate files
(e.g. the code pipeline's ``decoded/`` and ``eval/``, the ReLU study's ``trajectories.csv``) are
``run_dir / name``.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from .config import cfg_to_dict
from .io import (atomic_write_csv, atomic_write_json, atomic_write_jsonl, load_checkpoint, read_csv, read_json,
                 read_jsonl, save_checkpoint)

__all__ = ["RunDir", "environment_info", "git_commit"]


def git_commit(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The current commit and dirtiness of the repository holding ``root`` (None outside git)."""
    root = Path(root or Path(__file__).resolve().parents[1])
    try:
        proc = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=10)
        sha = proc.stdout.strip() if proc.returncode == 0 else None
        dirty = bool(subprocess.run(["git", "status", "--porcelain"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty if sha else None}


def cpu_model() -> str | None:
    """The CPU's model name (Linux ``/proc/cpuinfo``; else ``platform.processor()``), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment_info() -> dict[str, Any]:
    """Versions of python, the package and its main libraries, and the host.

    The CPU model and torch's CPU kernel level (``cpu_capability``: AVX2, AVX512, ...) are
    recorded because float results of a CPU run depend on them: the same seed and thread count
    gave bit-identical Π training on two VMs and different curves on a third (paper_repro.md §3).
    """
    import numpy
    import scipy
    import torch

    from . import __version__

    info: dict[str, Any] = {
        "composedft": __version__,
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info.update(git_commit())
    return info


class RunDir:
    """A results folder: ``config.json``, ``manifest.json`` and whatever the experiment writes."""

    def __init__(self, path: str | os.PathLike, *, create: bool = True):
        self.path = Path(path)
        self.config_path, self.manifest_path = self.path / "config.json", self.path / "manifest.json"
        self.results_path, self.data_dir = self.path / "results.csv", self.path / "data"
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        # the code that runs is the code at the start: a long run may outlive several commits
        self._git_at_start = git_commit() if create else None

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- paths ------------------------------------------------------------------------------
    def data_path(self, name: str) -> Path:
        return self.data_dir / name

    def tokenizer_path(self, name: str) -> Path:
        return self.path / name

    def model_path(self, name: str) -> Path:
        return self.path / "models" / f"{name}.pt"

    def stage_dir(self, name: str) -> Path:
        return self.path / "stages" / name

    def predictions_path(self, method: str, split: str) -> Path:
        return self.path / "predictions" / f"{method}_{split}.jsonl"

    # ---- readers and writers (atomic) --------------------------------------------------------
    def write_config(self, cfg: Any) -> Path:
        data = cfg_to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        return atomic_write_json(self.config_path, data)

    def read_config(self) -> dict[str, Any]:
        """The saved configuration ({} when the folder has none yet)."""
        return read_json(self.config_path) if self.config_path.exists() else {}

    def write_results(self, rows: list[Mapping[str, Any]]) -> Path:
        return atomic_write_csv(self.results_path, rows)

    def read_results(self) -> list[dict[str, str]]:
        """The rows of ``results.csv`` (the reader names the file when it is missing or broken)."""
        return read_csv(self.results_path)

    def save_model(self, name: str, obj: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.model_path(name), obj)

    def load_model(self, name: str, map_location: Any = "cpu") -> dict[str, Any]:
        return load_checkpoint(self.model_path(name), map_location=map_location)

    def write_predictions(self, method: str, split: str, records: list[Mapping[str, Any]]) -> Path:
        return atomic_write_jsonl(self.predictions_path(method, split), records)

    def read_predictions(self, method: str, split: str) -> list[dict[str, Any]]:
        return read_jsonl(self.predictions_path(method, split))

    def read_manifest(self) -> dict[str, Any]:
        return read_json(self.manifest_path) if self.manifest_path.exists() else {}

    def write_manifest(self, *, seed: Any = None, device: Any = None,
                       extra: Mapping[str, Any] | None = None) -> Path:
        """Write (or update) ``manifest.json``; wall time counts from this object's creation.

        The git commit and dirtiness recorded are those at creation (when the run started).
        """
        old = self.read_manifest()
        manifest = {
            **old,
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "written_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seed": seed,
            "device": str(device) if device is not None else old.get("device"),
            "wall_time_s": round(time.time() - self._t0, 3),
            "environment": {**environment_info(), **(self._git_at_start or git_commit())},
        }
        if extra:
            manifest.update(extra)
        return atomic_write_json(self.manifest_path, manifest)
