"""The run context every pipeline stage receives (see :mod:`simulations.code.pipeline`).

A :class:`Context` bundles the configuration, the run folder, the device and the process group
(``torchrun``: one process per rank); the run folder's example files are read and written here
so that every stage agrees on their format and a missing/corrupt file always names itself.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from composedft.io import atomic_write_jsonl, read_jsonl
from composedft.runs import RunDir

from .config import CodeConfig
from .data import Example, TestCase

# fields that may change between invocations on one run folder (they do not change results)
# fields a run folder may be resumed with other values of: how to compute, not what; and
# ``methods``: each method's stage, predictions and verdicts are its own, so methods can be added
RESUME_FREE_FIELDS = {"device", "threads", "eval_workers", "decode_batch_size", "amp", "methods"}


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
