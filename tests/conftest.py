"""Shared fixtures and automatic skips for the whole suite.

Markers (declared in pyproject.toml) skip cleanly when what they need is absent:
``gpu`` without CUDA, ``gpp`` without g++ on PATH, ``data`` without the shared data folder
(``$COMPOSEDFT_DATA`` if set, else ``<repo>/../shared/data``).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_path() -> Path:
    """``$COMPOSEDFT_DATA`` if set, else ``<repo>/../shared/data`` (it may not exist)."""
    env = os.environ.get("COMPOSEDFT_DATA")
    return Path(env) if env else (REPO_ROOT / ".." / "shared" / "data").resolve()


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    needs = {
        "gpu": (_has_cuda, "needs a CUDA device"),
        "gpp": (lambda: shutil.which("g++") is not None, "needs g++ on PATH"),
        "data": (lambda: shared_data_path().is_dir(), f"needs the shared data folder ({shared_data_path()})"),
    }
    available: dict[str, bool] = {}
    for item in items:
        for name, (probe, why) in needs.items():
            if item.get_closest_marker(name) is None:
                continue
            if name not in available:
                available[name] = bool(probe())
            if not available[name]:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (tests run from anywhere)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data folder; the test is skipped when it is absent."""
    path = shared_data_path()
    if not path.is_dir():
        pytest.skip(f"shared data folder not found ({path}); set COMPOSEDFT_DATA")
    return path


@pytest.fixture
def float64():
    """Run the test with torch's default dtype set to float64 (restored afterwards)."""
    import torch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield torch.float64
    finally:
        torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _restore_torch_default_dtype():
    """Guard against global-state leaks: a test (or a CLI main() it calls) that changes torch's
    default dtype must not change the dtype seen by the tests after it."""
    import torch

    old = torch.get_default_dtype()
    yield
    torch.set_default_dtype(old)
