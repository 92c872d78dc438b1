"""``python -m simulations.code <command>``: data generation and evaluation for the code tasks.

Commands:
  make-sanstype --out DIR [--n-train N --n-unlabeled N --seed S]   SANSTYPE splits + denoiser pairs
  check-gold --data PATH [--limit N] [--json OUT]                   gold programs through the evaluator
  evaluate --data PATH --predictions FILE [--json OUT]             score a JSONL of {id, code}
  summary DIR [DIR ...]                                             accuracy over seeds, paired comparisons
  grad-variance [--run DIR] [--preset toy] [--repeats R]            gradient variance: ours vs reference estimator
  val-acc --out DIR --method NAME [--posthoc] [--beam B]            execution accuracy on the validation split
  run --preset NAME --out DIR [--field=value ...]                   the training pipeline (see run --help)

``PATH`` is a SPoC ``.tsv`` (test cases from ``testcases/`` beside it or ``--testcases``) or a
SANSTYPE split prefix such as ``../shared/data/sanstype/train``.
"""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path

from .data import DataFormatError, load_dataset, tgt_to_code
from .summary import main as summary_main

SPLITS = (("train", False), ("val", False), ("test", False), ("ood", True))


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="SPoC .tsv or SANSTYPE split prefix")
    p.add_argument("--testcases", default=None, help="SPoC test-case folder (default: beside the TSV)")
    p.add_argument("--json", default=None, help="write the summary JSON here")
    p.add_argument("--workers", type=_positive_int, default=None, help="parallel workers (default: cores)")
    p.add_argument("--time-limit", type=_positive_float, default=2.0,
                   help="CPU seconds per test case (wall-clock backstop 10x + 5 s)")
    p.add_argument("--cache-dir", default=None, help="PCH/binary cache (default ~/.cache/composedft)")
    p.add_argument("--flags", default=None, help="g++ flags, space-separated (default: the pinned ones)")


def _check_out_path(opt: str, path: str | None) -> None:
    """An output path must not be a directory and its parent must be a directory."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{opt} {path}: is a directory, expected a file path")
    parent = p.absolute().parent
    if not parent.is_dir():
        raise ValueError(f"{opt} {path}: parent {parent} is not a directory")


def _evaluator(a):
    from .evaluator import DEFAULT_FLAGS, Evaluator
    flags = tuple(a.flags.split()) if a.flags else DEFAULT_FLAGS
    for opt in ("json", "records"):
        _check_out_path(f"--{opt}", getattr(a, opt, None))
    if a.cache_dir and Path(a.cache_dir).exists() and not Path(a.cache_dir).is_dir():
        raise ValueError(f"--cache-dir {a.cache_dir}: not a directory")
    return Evaluator(workers=a.workers, time_limit_s=a.time_limit, cache_dir=a.cache_dir, flags=flags,
                     progress=True)


def _positive_float(text: str) -> float:
    """argparse type: a positive finite number (``--time-limit``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return v


def _positive_int(text: str) -> int:
    """argparse type: a positive integer (``--workers``, ``--limit``)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _write_json(path: str | None, obj: dict) -> None:
    if path:
        from composedft.io import atomic_write_json
        atomic_write_json(path, obj)


def cmd_make_sanstype(a) -> int:
    import numpy as np
    from .corrupt import corrupt_sanstype
    from .data import Example, write_sanstype
    from .sanstype import generate_programs
    from .sanstype_cases import generate
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = {"train": a.n_train, "val": a.n_val, "test": a.n_test, "ood": a.n_ood}
    for k, (split, ood) in enumerate(SPLITS):
        if (out / f"{split}.out").exists():
            print(f"{split}: exists, skipped")
            continue
        t0 = time.perf_counter()
        write_sanstype(out / split, generate(sizes[split], seed=a.seed * 100 + k, ood=ood, id_prefix=f"{split}-"))
        print(f"{split}: {sizes[split]} programs in {time.perf_counter() - t0:.1f}s")
    if not (out / "denoise_train.tgt").exists():
        # Denoiser pairs: corrupt(y) -> y on fresh programs from the same generator (docs/data-formats.md §5.1).
        rng = np.random.default_rng(a.seed * 100 + 50)
        progs = generate_programs(a.n_unlabeled, seed=a.seed * 100 + 51, id_prefix="unlabeled-")
        pairs = [Example(p.id, corrupt_sanstype(p.tgt, rng), p.tgt) for p in progs]
        write_sanstype(out / "denoise_train", pairs)
        print(f"denoise_train: {len(pairs)} (corrupted, clean) pairs")
    return 0


def cmd_check_gold(a) -> int:
    examples = load_dataset(a.data, a.testcases)
    if a.limit:
        examples = examples[:a.limit]
    preds = {e.id: (tgt_to_code(e.tgt) if a.source == "tgt" else tgt_to_code(e.code or e.tgt))
             for e in examples}
    records, summary = _evaluator(a).evaluate(preds, examples)
    failures = [r for r in records if r["status"] != "ok"]
    res = {"data": str(a.data), "source": a.source, "n": summary["n"], "passed": summary["ok"],
           "pass_rate": summary["exec_acc"], "programs_per_s": summary["programs_per_s"],
           "failures": failures, "summary": summary}
    _write_json(a.json, res)
    print(f"{a.data}: {res['passed']}/{res['n']} gold programs pass ({100 * res['pass_rate']:.2f}%), "
          f"{res['programs_per_s']:.2f} programs/s, {summary['wall_s']:.1f}s")
    for f in failures:
        print(f"  FAIL {f['id']}: {f['status']} (case {f['first_failing_case']}) {f['detail'][:200]}")
    return 0


def cmd_evaluate(a) -> int:
    from composedft.io import atomic_write_jsonl
    from .evaluator import read_predictions
    examples = load_dataset(a.data, a.testcases)
    preds = read_predictions(a.predictions)
    unknown = sorted(set(preds) - {e.id for e in examples})
    if unknown:
        print(f"warning: {len(unknown)} prediction ids not in {a.data}, e.g. {unknown[:3]}", file=sys.stderr)
    records, summary = _evaluator(a).evaluate(preds, examples)
    summary["unknown_ids"] = len(unknown)
    _write_json(a.json, summary)
    if a.records:
        atomic_write_jsonl(a.records, records)
    print(json.dumps({k: v for k, v in summary.items() if k != "flags"}, indent=None))
    return 0


def _grad_variance(a) -> int:
    from .grad_variance import main as grad_variance_main  # torch and the tokenizer only when asked
    return grad_variance_main(a.argv)


def _val_acc(a) -> int:
    from .val_acc import main as val_acc_main  # torch only when asked
    return val_acc_main(a.argv)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m simulations.code", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-sanstype", help="generate SANSTYPE splits and denoiser pairs")
    p.add_argument("--out", required=True)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=500)
    p.add_argument("--n-test", type=int, default=500)
    p.add_argument("--n-ood", type=int, default=500)
    p.add_argument("--n-unlabeled", type=int, default=20000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_make_sanstype)

    p = sub.add_parser("check-gold", help="run the gold programs of a dataset through the evaluator")
    _add_eval_args(p)
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--source", choices=("tgt", "raw"), default="tgt",
                   help="tgt: detokenized .tgt (what models predict); raw: SPoC's original code lines")
    p.set_defaults(func=cmd_check_gold)

    p = sub.add_parser("evaluate", help="evaluate a JSONL of predictions {id, code}")
    _add_eval_args(p)
    p.add_argument("--predictions", required=True)
    p.add_argument("--records", default=None, help="write per-program records (JSONL) here")
    p.set_defaults(func=cmd_evaluate)

    # its arguments go verbatim to simulations.code.summary.main, which owns them (and --help)
    p = sub.add_parser("summary", prefix_chars="+", add_help=False,
                       help="accuracy per method over seed folders, paired comparisons with bootstrap "
                            "intervals (python -m simulations.code summary DIR [DIR ...])")
    p.add_argument("argv", nargs="*")
    p.set_defaults(func=lambda a: summary_main(a.argv))

    # its arguments go verbatim to simulations.code.grad_variance.main, which owns them (and --help)
    p = sub.add_parser("grad-variance", prefix_chars="+", add_help=False,
                       help="per-coordinate gradient variance of the ours and reference composed estimators "
                            "on one batch (python -m simulations.code grad-variance [--run DIR] [--repeats R])")
    p.add_argument("argv", nargs="*")
    p.set_defaults(func=_grad_variance)

    # its arguments go verbatim to simulations.code.val_acc.main, which owns them (and --help)
    p = sub.add_parser("val-acc", prefix_chars="+", add_help=False,
                       help="execution accuracy of a trained f on the validation split "
                            "(python -m simulations.code val-acc --out DIR --method NAME)")
    p.add_argument("argv", nargs="*")
    p.set_defaults(func=_val_acc)

    from . import pipeline  # the `run` command: python -m simulations.code run --preset ... --out DIR
    pipeline.add_parser(sub)
    return ap


class Terminated(Exception):
    """SIGTERM, turned into an exception so that cleanup runs (docs/sandbox.md §5)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _cleanup_sandbox() -> None:
    """Kill whatever sandboxed process is left and remove the sandbox directory."""
    if "simulations.code.sandbox" in sys.modules:
        from . import sandbox, sandbox_ws
        sandbox.kill_all_of_this_process()
        sandbox_ws.remove_root()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    old = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except (DataFormatError, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError,
            IsADirectoryError, PermissionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _cleanup_sandbox()
        print("error: interrupted (SIGINT); sandboxed programs killed, sandbox removed", file=sys.stderr)
        return 130
    except Terminated:
        _cleanup_sandbox()
        print("error: terminated (SIGTERM); sandboxed programs killed, sandbox removed", file=sys.stderr)
        return 143
    finally:
        signal.signal(signal.SIGTERM, old)


if __name__ == "__main__":
    sys.exit(main())
