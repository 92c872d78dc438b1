"""``python -m simulations.code val-acc --out DIR --method NAME``: execution accuracy on validation.

Model and preset choices (depth, steps, augmentation) are made on the validation split only
(issue 12); token NLL is what the training loop selects on, but the quantity that matters is
execution accuracy, so this decodes the run folder's ``data/val.jsonl`` with a trained f
(optionally followed by Π, ``--posthoc``), runs every program on its test cases through the
sandboxed evaluator, and prints the accuracy with its Wilson 95% interval over programs. The
record goes to ``eval/val_<name>.json`` and the programs with their verdicts to
``eval/val_<name>.jsonl`` (``name`` = method [+posthoc] [_beamB]), for error analysis; the test
splits are never touched. The record counts the compile errors by the kind of their first g++
error (:func:`compile_error_kind`).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

import torch

from composedft.config import cfg_from_dict
from composedft.io import atomic_write_json, atomic_write_jsonl
from composedft.runs import RunDir
from composedft.stats import wilson_ci

from .config import CodeConfig
from .context import Context, Dist, RunFolderError, read_examples
from .data import tgt_to_code
from .exec_acc import exec_accuracy
from .stage_data import load_tokenizer, tokenizer_info
from .stages import load_model

__all__ = ["val_exec_acc", "compile_error_kind", "main"]

# g++ quotes names with typographic quotes (UTF-8 locales) or ASCII ones (C locale)
_QUOTED = re.compile(r"‘[^’]*’|'[^'\n]*'")


def compile_error_kind(detail: str) -> str:
    """The first g++ ``error:`` message of a compile verdict's ``detail`` with every quoted name
    replaced by ``X`` (``'var_4' was not declared in this scope; ...`` -> ``X was not declared in
    this scope; did you mean X?``), so that errors of one kind count together; ``"other"`` if
    the detail has no error line (a compiler stopped by a limit)."""
    m = re.search(r"\berror: ([^\n]*)", detail)
    return _QUOTED.sub("X", m.group(1)).strip() if m else "other"


def val_exec_acc(out: str | Path, method: str, *, posthoc: bool = False, beam: int = 1, limit: int = 0,
                 workers: int | None = None) -> dict:
    """Decode and run the validation programs of run folder ``out`` with ``models/<method>.pt``."""
    rd = RunDir(out, create=False)
    if not rd.config_path.exists():
        raise RunFolderError(f"{rd.config_path}: missing (not a run folder of the code pipeline)")
    cfg = cfg_from_dict(CodeConfig, rd.read_config())
    ctx = Context(cfg=cfg, rd=rd, device=torch.device("cpu"), dist=Dist())
    tok = load_tokenizer(ctx)
    f = load_model(ctx, method, tok)
    denoiser = load_model(ctx, "denoiser", tok, denoiser=True) if posthoc else None
    examples = read_examples(rd.data_path("val.jsonl"))
    examples = examples[:limit] if limit else examples
    out = exec_accuracy(cfg, tok, f, examples, tokenizer_info(ctx)["max_decode_len"], denoiser=denoiser, beam=beam,
                        workers=workers)
    records, codes, summary = out["records"], out["codes"], out["summary"]
    acc, lo, hi = wilson_ci(out["ok"], out["n"])
    name = method + ("+posthoc" if posthoc else "") + (f"_beam{beam}" if beam > 1 else "")
    record = {"method": name, "split": "val", "n": len(records), "exec_acc": round(acc, 4),
              "ci95": [round(lo, 4), round(hi, 4)], "compile_rate": round(summary["compile_rate"], 4),
              "counts": summary["counts"],
              # what the compile errors are: the measured breakdown behind the competence bar
              "compile_errors": dict(Counter(compile_error_kind(r.get("detail", "")) for r in records
                                             if r["status"] == "compile_error").most_common())}
    atomic_write_jsonl(rd / "eval" / f"val_{name}.jsonl",
                       [{"id": e.id, "status": r["status"], "detail": r.get("detail", ""), "code": codes[e.id],
                         "gold": tgt_to_code(e.tgt)}
                        for e, r in zip(examples, records)])
    atomic_write_json(rd / "eval" / f"val_{name}.json", record)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.code val-acc", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="run folder")
    ap.add_argument("--method", required=True, help="trained f (models/<method>.pt), e.g. standard")
    ap.add_argument("--posthoc", action="store_true", help="apply Π to f's outputs")
    ap.add_argument("--beam", type=int, default=1)
    ap.add_argument("--limit", type=int, default=0, help="first N validation programs (0 = all)")
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args(argv)
    if a.beam < 1 or a.limit < 0:
        print(f"error: --beam must be >= 1 and --limit >= 0 (got {a.beam}, {a.limit})", file=sys.stderr)
        return 2
    try:
        rec = val_exec_acc(a.out, a.method, posthoc=a.posthoc, beam=a.beam, limit=a.limit, workers=a.workers)
    except RunFolderError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(rec))
    return 0
