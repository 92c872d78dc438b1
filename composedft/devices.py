"""Device selection and mixed precision (bf16 autocast on CUDA only)."""
from __future__ import annotations

import contextlib

import torch

__all__ = ["resolve_device", "autocast", "device_description"]


def resolve_device(name: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N|mps`` to a ``torch.device``.

    ``auto`` picks CUDA, then Apple MPS, then CPU. Asking for a device that is not available is
    an error rather than a silent fallback, so a GPU run never quietly runs on the CPU.
    """
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device '{name}' requested but MPS is not available")
    if dev.type not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"unsupported device '{name}' (use auto, cpu, cuda, cuda:N or mps)")
    return dev


def autocast(device: torch.device | str, enabled: bool = True):
    """bf16 autocast on CUDA; a no-op context elsewhere (CPU runs stay in full precision)."""
    dev = torch.device(device)
    if enabled and dev.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def device_description(device: torch.device | str) -> str:
    """Human-readable device name for manifests (e.g. 'cuda: NVIDIA H100 80GB HBM3')."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(dev)}"
    if dev.type == "cpu":
        import os
        import platform
        return f"cpu: {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return str(dev)
