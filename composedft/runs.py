"""Run folders: the resolved ``config.json`` and a ``manifest.json`` that says how a result was made.

A manifest records what a reviewer needs to trust a number: package and library versions, the
git commit (and whether the tree was dirty), the device, the seed(s), the command line and the
wall time.
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
from .io import atomic_write_json, read_json

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


def environment_info() -> dict[str, Any]:
    """Versions of python, the package and its main libraries, and the host."""
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
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info.update(git_commit())
    return info


class RunDir:
    """A results folder: ``config.json``, ``manifest.json`` and whatever the experiment writes."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        # the code that runs is the code at the start: a long run may outlive several commits
        self._git_at_start = git_commit()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_config(self, cfg: Any) -> Path:
        data = cfg_to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        return atomic_write_json(self.path / "config.json", data)

    def read_manifest(self) -> dict[str, Any]:
        p = self.path / "manifest.json"
        return read_json(p) if p.exists() else {}

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
            "environment": {**environment_info(), **self._git_at_start},
        }
        if extra:
            manifest.update(extra)
        return atomic_write_json(self.path / "manifest.json", manifest)
