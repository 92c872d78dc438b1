"""``python -m simulations.code summary DIR [DIR ...]``: accuracies over seeds, paired comparisons.

Each DIR is one seed's run folder (or a committed copy of its small files), or one part of it:
folders with the same seed are joined, so methods run later or on another machine (in a folder of
their own, ``--shared-from`` the same Π) add to that seed; a method found in two folders of one
seed, or parts whose test programs differ, are refused. A folder holds ``config.json`` and
per-program verdicts, read from ``verdicts.csv`` (one row per (split, id), a 0/1 column per
method) or, in a full run folder, from ``predictions/<method>_<split>.jsonl``. Prints Markdown:

1. per method and split: mean execution accuracy over seeds with a 95% t-interval; a method with
   one seed gets the 95% Wilson interval over its programs instead (a t-interval over one seed
   does not exist), marked ``*``;
2. per split, for each comparison (composed vs standard, standard+posthoc vs standard, ...): the
   paired difference in accuracy with a 95% bootstrap interval that resamples seeds and, within
   each seed, programs (the same programs for both methods: paired), and the relative gain
   (acc_a - acc_b) / acc_b, the paper's terms (docs/experiments.md §3).

When the folders hold Π's validation curve (``curves/denoiser.csv`` in a committed folder,
``stages/denoiser/eval.csv`` in a run folder) and the curves are not all identical, a line says
which folders share which Π: their comparisons then mix denoisers trained alike but not
bit-identical (the same seed on another CPU, docs/design-decisions.md §5).

When a seed's ``manifest.json`` records a composed learning rate chosen on validation
(``composed_lr_grid``), a line before the table says which rate each seed's composed stages used.

Folders made with different configurations (other than the seed and run-only fields) are refused
with a message naming the folder and the field, so seeds of two presets or tokenizers never mix.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from composedft.io import DataFileError, read_csv, read_json, read_jsonl
from composedft.methods import registry_order
from composedft.runs import RunDir
from composedft.stats import mean_ci, wilson_ci

__all__ = ["COMPARISONS", "load_seed", "join_seeds", "load_seeds", "denoiser_groups", "selected_rates", "seed_accuracies", "check_same_config", "paired_diffs", "paired_bootstrap", "summarize", "main"]

# (a, b): report acc(a) - acc(b); pairs whose methods are absent are skipped
COMPARISONS = (("composed", "standard"), ("standard+posthoc", "standard"), ("composed", "standard+posthoc"),
               ("composed-denoiser-init", "standard"), ("bt", "standard"), ("bt+composed", "bt"),
               ("direct+posthoc", "direct"))
# fields that may differ between seed folders of one experiment (they do not change what is computed)
# (``methods``: a seed folder may hold more methods than another; each row says how many seeds it has)
FREE_FIELDS = frozenset({"seed", "threads", "eval_workers", "device", "data_dir", "decode_batch_size", "methods"})
N_BOOT = 2000


def load_seed(folder: str | Path) -> tuple[dict, dict[str, dict[str, dict[str, int]]]]:
    """``(config, {split: {method: {program id: 0/1}}})`` of one seed folder."""
    rd = RunDir(folder, create=False)
    if not rd.config_path.exists():
        raise DataFileError(f"{rd.config_path}: not found (is {folder} a run folder of simulations.code run?)")
    from .config import completed_config  # torch (via the model config) only when a folder is read
    cfg = completed_config(rd.read_config())  # a folder from before a field was added: the value it had
    verdicts: dict[str, dict[str, dict[str, int]]] = {}
    vpath = rd / "verdicts.csv"
    if vpath.exists():
        for line, row in enumerate(read_csv(vpath), start=2):
            if "split" not in row or "id" not in row:
                raise DataFileError(f"{vpath}:{line}: needs columns 'split' and 'id'")
            for method, v in row.items():
                if method in ("split", "id"):
                    continue
                if v not in ("0", "1"):
                    raise DataFileError(f"{vpath}:{line}: column '{method}' must be 0 or 1, got {v!r}")
                verdicts.setdefault(row["split"], {}).setdefault(method, {})[row["id"]] = int(v)
    else:
        for path in sorted((rd.path / "predictions").glob("*_*.jsonl")):
            method, split = path.stem.rsplit("_", 1)
            verdicts.setdefault(split, {})[method] = {r["id"]: int(r.get("status") == "ok") for r in read_jsonl(path)}
    if not verdicts:
        raise DataFileError(f"{folder}: no verdicts.csv and no predictions/*.jsonl (run the evaluate stage first)")
    return cfg, verdicts


def join_seeds(loaded: dict[str, tuple[dict, dict]]) -> dict[int, tuple[list[str], dict]]:
    """``{seed: (folders, verdicts)}``: the verdicts of the folders of one seed, joined method by
    method (``loaded`` maps a folder to :func:`load_seed`'s pair; order kept)."""
    out: dict[int, tuple[list[str], dict]] = {}
    owner: dict[tuple[int, str, str], str] = {}  # (seed, split, method) -> the folder that has it
    for folder, (cfg, verdicts) in loaded.items():
        folders, joined = out.setdefault(cfg.get("seed"), ([], {}))
        for split, by_method in verdicts.items():
            have = joined.setdefault(split, {})
            for method, v in by_method.items():
                key = (cfg.get("seed"), split, method)
                if key in owner:
                    raise DataFileError(f"{folder}: method '{method}' ({split}) of seed {key[0]} is also in "
                                        f"{owner[key]}; give each method of a seed once")
                other = next(iter(have.items()), None)
                if other and set(other[1]) != set(v):
                    raise DataFileError(f"{folder}: the {split} programs of '{method}' differ from those of "
                                        f"'{other[0]}' in {owner[(key[0], split, other[0])]} (same seed, other test set?)")
                owner[key] = folder
                have[method] = v
        folders.append(folder)
    return out


def load_seeds(folders) -> dict[int, tuple[list[str], dict]]:
    """Read every folder (:func:`load_seed`), refuse mixed configurations
    (:func:`check_same_config`), and join the folders of each seed (:func:`join_seeds`)."""
    loaded = {str(f): load_seed(f) for f in folders}
    check_same_config({f: c for f, (c, _) in loaded.items()})
    return join_seeds(loaded)


def denoiser_groups(folders: list[str]) -> list[list[str]]:
    """The folders grouped by the text of Π's validation curve (equal text: the same Π, as far as
    the saved files tell); folders without a curve are left out."""
    groups: dict[str, list[str]] = {}
    for f in folders:
        path = next((q for q in (Path(f) / "curves" / "denoiser.csv", Path(f) / "stages" / "denoiser" / "eval.csv")
                     if q.exists()), None)
        if path is not None:
            groups.setdefault(path.read_text(), []).append(f)
    return list(groups.values())


def selected_rates(folder: str | Path) -> dict[str, float]:
    """``{method: rate}`` for the composed stages of a seed folder whose learning rate was chosen
    on validation (``composed_lr_grid``; the manifest's ``selected_lr``); {} without a manifest."""
    path = Path(folder) / "manifest.json"
    if not path.exists():
        return {}
    stages = read_json(path).get("stages", {})
    return {m: rec["selected_lr"] for m, rec in stages.items() if isinstance(rec, dict) and "selected_lr" in rec}


def check_same_config(configs: dict[str, dict]) -> None:
    """Refuse seed folders whose configurations differ outside :data:`FREE_FIELDS`."""
    (first, ref), *rest = configs.items()
    for folder, cfg in rest:
        diff = sorted(k for k in set(ref) | set(cfg) if k not in FREE_FIELDS and ref.get(k) != cfg.get(k))
        if diff:
            k = diff[0]
            raise DataFileError(f"{folder}: made with a different configuration than {first}: field '{k}' is "
                                f"{cfg.get(k)!r} there, {ref.get(k)!r} in {first}"
                                + (f" (and {len(diff) - 1} more: {', '.join(diff[1:])})" if len(diff) > 1 else ""))


def seed_accuracies(seeds: list[dict], split: str, method: str) -> list[float]:
    """Execution accuracy of ``method`` on ``split`` in each seed that has it on at least one
    program (mean of its 0/1 verdicts)."""
    return [float(np.mean(list(v[split][method].values()))) for v in seeds if v.get(split, {}).get(method)]


def paired_bootstrap(diffs: list[np.ndarray], n_boot: int = N_BOOT, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """Mean paired difference and its percentile bootstrap interval.

    ``diffs[s]`` holds the per-program differences (a - b, in {-1, 0, 1}) of seed s. The point
    estimate is the mean over seeds of the per-seed mean difference; each bootstrap replicate
    resamples seeds with replacement, then programs within each drawn seed (two-stage bootstrap).
    """
    means = np.array([d.mean() for d in diffs])
    rng = np.random.default_rng(seed)
    n_seeds = len(diffs)
    picks = rng.integers(n_seeds, size=(n_boot, n_seeds))
    # slot (b, j) of replicate b draws a fresh resample of seed picks[b, j]'s programs: precompute,
    # per seed, one resampled mean for every slot (vectorized), then read the slots it fills
    pools = [d[rng.integers(d.size, size=(n_boot * n_seeds, d.size))].mean(axis=1) for d in diffs]
    slot_means = np.stack(pools)[picks.reshape(-1), np.arange(n_boot * n_seeds)].reshape(n_boot, n_seeds)
    reps = slot_means.mean(axis=1)
    lo, hi = np.quantile(reps, [(1 - level) / 2, (1 + level) / 2])
    return float(means.mean()), float(lo), float(hi)


def paired_diffs(seeds: list[dict], split: str, a: str, b: str) -> list[np.ndarray] | None:
    out = []
    for v in seeds:
        va, vb = v.get(split, {}).get(a), v.get(split, {}).get(b)
        if va is None or vb is None:  # a seed folder without one of the two methods: not paired
            continue
        ids = sorted(set(va) & set(vb))
        out.append(np.array([va[i] - vb[i] for i in ids], float))
    return out or None


def summarize(folders: list[str | Path], n_boot: int = N_BOOT) -> str:
    """The Markdown report of the module docstring."""
    joined = load_seeds(folders)
    seeds = [v for _, v in joined.values()]
    splits = sorted({s for v in seeds for s in v})
    methods = registry_order(m for v in seeds for s in splits for m in v.get(s, {}))
    parts = "".join(f"; seed {k}: {', '.join(fs)}" for k, (fs, _) in joined.items() if len(fs) > 1)
    lines = [f"seeds: {len(seeds)} ({', '.join(str(k) for k in joined)}){parts}", "",
             "| method | seeds | " + " | ".join(f"{s} exec acc [95% CI]" for s in splits) + " |",
             "|---|---|" + "---|" * len(splits)]
    chosen = {k: {m: r for f in fs for m, r in selected_rates(f).items()} for k, (fs, _) in joined.items()}
    if any(chosen.values()):  # the rate is part of the result: a reader must see which one was used
        lines[1:1] = ["composed learning rate chosen on validation (composed_lr_grid): " + "; ".join(
            f"seed {k}: " + ", ".join(f"{m} {r[m]:g}" for m in registry_order(r))
            for k, r in chosen.items() if r), ""]
    pis = denoiser_groups([f for fs, _ in joined.values() for f in fs])
    if len(pis) > 1:  # a paired difference across these folders mixes denoisers
        lines[1:1] = [f"denoiser: {len(pis)} different Π (validation curves differ): " + "; ".join(
            f"Π{i + 1}: {', '.join(g)}" for i, g in enumerate(pis)), ""]
    for m in methods:
        cells = []
        for s in splits:
            accs = seed_accuracies(seeds, s, m)
            if len(accs) == 1:  # one seed: the interval is over programs (0/1 verdicts)
                one = next(v[s][m] for v in seeds if v.get(s, {}).get(m))
                mu, lo, hi = wilson_ci(int(sum(one.values())), len(one))
                cells.append(f"{mu:.3f} [{lo:.3f}, {hi:.3f}]*")
                continue
            mu, lo, hi = mean_ci(accs)
            cells.append(f"{mu:.3f} [{lo:.3f}, {hi:.3f}]" if accs else "-")
        n_m = sum(1 for v in seeds if any(m in v.get(s, {}) for s in splits))
        lines.append(f"| {m} | {n_m} | " + " | ".join(cells) + " |")
    if any("]*" in line for line in lines):
        lines += ["", "\\* one seed: 95% Wilson interval over programs, not over seeds"]
    lines += ["", "| comparison | split | seeds | paired diff [95% bootstrap CI] | relative gain | verdict |",
              "|---|---|---|---|---|---|"]
    for a, b in COMPARISONS:
        for s in splits:
            diffs = paired_diffs(seeds, s, a, b)
            if diffs is None:
                continue
            d, lo, hi = paired_bootstrap(diffs, n_boot=n_boot)
            both = [v for v in seeds if a in v.get(s, {}) and b in v.get(s, {})]
            acc_b = np.mean([np.mean(list(v[s][b].values())) for v in both])
            rel = f"{d / acc_b:+.1%}" if acc_b > 0 else "n/a"
            verdict = f"{a} better" if lo > 0 else f"{b} better" if hi < 0 else "no significant difference"
            lines.append(f"| {a} vs {b} | {s} | {len(both)} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] | {rel} | {verdict} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulations.code summary", description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", help="run folders (or committed results folders), one or more per seed")
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap replicates (default %(default)s)")
    ns = p.parse_args(argv)
    if ns.n_boot < 100:
        print("error: --n-boot must be >= 100", file=sys.stderr)
        return 2
    try:
        print(summarize(ns.folders, n_boot=ns.n_boot))
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
