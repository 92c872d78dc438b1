"""Figures of the pseudocode-to-code experiment, from saved run folders only (one or more per
seed: folders of one seed are joined as ``summary`` joins them, :func:`~simulations.code.summary.load_seeds`).

``python -m figures code DIR [DIR ...] [--out FOLDER]`` writes (default FOLDER: ``DIR/figures``
of the first DIR):

  code_accuracy.png/.pdf/.csv  execution accuracy per method, ID and OOD side by side. Several
      seeds: mean over seeds with a 95% Student-t interval (:func:`composedft.stats.mean_ci`, the
      ``summary`` table's numbers) and the seeds as dots; one seed: the accuracy with a 95% Wilson
      interval over programs (:func:`composedft.stats.wilson_ci`). The CSV names the kind per row.
  code_denoiser_fix.png/.txt   the paper's Figure 5 analogue (§5): one test program where Π fixes
      the composed base predictor f's output, chosen by :func:`pick_fix`'s rule, never by hand.

Verdicts come from ``verdicts.csv`` or ``predictions/`` (:func:`simulations.code.summary.load_seed`);
the fix figure also needs ``predictions/{composed-base,composed}_<split>.jsonl`` and
``data/test_<split>.jsonl`` of the first DIR.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from composedft.io import DataFileError, atomic_write_csv, atomic_write_text, read_jsonl
from composedft.methods import registry_order
from composedft.stats import mean_ci, wilson_ci
from simulations.code.summary import load_seeds, seed_accuracies

from . import style
from .style import plt

__all__ = ["SPLITS", "BASE", "COMPOSED", "accuracy_rows", "plot_accuracy", "edit_distance", "statements",
           "Candidate", "pick_fix", "fix_inputs", "load_candidates", "fix_text", "plot_fix", "main"]

SPLITS = ("id", "ood")
SPLIT_COLORS = {"id": "#4c72b0", "ood": "#dd8452"}
BASE, COMPOSED = "composed-base", "composed"  # f alone, and Π∘f (composedft.methods)
T_KIND, WILSON_KIND = "t95 over seeds", "wilson95 over programs"
CSV_FIELDS = ("method", "split", "mean", "lo", "hi", "n_seeds", "n_programs", "interval")
PICK_RULE = ("among test programs of the first seed folder, ID first and OOD only if ID has none, where "
             f"'{BASE}' (f alone) fails and '{COMPOSED}' (Π∘f) passes: the smallest token edit distance "
             "> 0 between the two outputs; ties broken by the smallest program id")


# ---- Figure A: accuracy per method ---------------------------------------------------------------

def accuracy_rows(seeds: list[dict[str, dict[str, dict[str, int]]]]) -> list[dict]:
    """One row per (method, split) present: mean, 95% interval, how many seeds, the interval's kind.

    Args:
        seeds: per seed folder, ``{split: {method: {program id: 0/1}}}`` (``summary.load_seed``).

    Returns:
        rows ``{method, split, mean, lo, hi, n_seeds, n_programs, interval, seed_accs}`` in the
        registry's method order (``composedft.methods.registry_order``), ID before OOD. With two or
        more seeds the interval is the t-interval of the per-seed accuracies; with one, the Wilson
        interval over its programs.
    """
    splits = [s for s in SPLITS if any(s in v for v in seeds)] + sorted({s for v in seeds for s in v} - set(SPLITS))
    methods = registry_order(m for v in seeds for s in splits for m in v.get(s, {}))
    rows = []
    for m in methods:
        for s in splits:
            accs = seed_accuracies(seeds, s, m)
            if not accs:
                continue
            verdicts = [v[s][m] for v in seeds if v.get(s, {}).get(m)]  # the seeds seed_accuracies used
            n_prog = sum(len(x) for x in verdicts)
            if len(accs) >= 2:
                mu, lo, hi = mean_ci(accs)
                kind = T_KIND
            else:
                mu, lo, hi = wilson_ci(sum(verdicts[0].values()), len(verdicts[0]))
                kind = WILSON_KIND
            rows.append({"method": m, "split": s, "mean": mu, "lo": lo, "hi": hi, "n_seeds": len(accs),
                         "n_programs": n_prog, "interval": kind, "seed_accs": accs})
    return rows


def tick_labels(rows: list[dict]) -> list[str]:
    """One label per method (first-appearance order). When methods have different seed counts
    (e.g. bt run on one seed, the others on three), each label says its method's count, so that a
    one-seed Wilson bar is not read as a mean over seeds."""
    n = {}
    for r in rows:
        n[r["method"]] = max(n.get(r["method"], 0), r["n_seeds"])
    if len(set(n.values())) <= 1:
        return list(n)
    return [f"{m}\n({k} seed{'s' if k != 1 else ''})" for m, k in n.items()]


def plot_accuracy(rows: list[dict], ax=None):
    """Bars: mean execution accuracy per method, hue = split; whiskers: the rows' intervals (drawn
    clipped to [0, 1]); dots: the seeds' accuracies when there are several."""
    style.apply()
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(max(7.2, 1.05 * len(methods)), 3.6)) if ax is None else (ax.figure, ax)
    splits = list(dict.fromkeys(r["split"] for r in rows))
    width = 0.8 / max(len(splits), 1)
    labelled: set[str] = set()
    for r in rows:
        x = methods.index(r["method"]) - 0.4 + width * (splits.index(r["split"]) + 0.5)
        label = None if r["split"] in labelled else r["split"].upper()
        labelled.add(r["split"])
        ax.bar(x, r["mean"], width=width * 0.92, color=SPLIT_COLORS.get(r["split"], style.color(r["split"])),
               alpha=0.85, label=label)
        lo, hi = np.clip([r["lo"], r["hi"]], 0.0, 1.0)  # a t-interval of 2-3 seeds can leave [0, 1]; the CSV keeps it
        ax.errorbar(x, r["mean"], yerr=[[r["mean"] - lo], [hi - r["mean"]]], color="k", capsize=2.5, lw=1)
        if r["n_seeds"] > 1:
            pts = np.asarray(r["seed_accs"])
            ax.scatter(x + np.linspace(-width / 4, width / 4, pts.size), pts, s=7, color="k", zorder=3)
    ax.set_xticks(range(len(methods)), tick_labels(rows), rotation=20, fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("execution accuracy")
    kinds = sorted({r["interval"] for r in rows})
    counts = sorted({r["n_seeds"] for r in rows})
    what = {T_KIND: "mean over seeds, 95% t-interval, dots = seeds",
            WILSON_KIND: "95% Wilson interval over programs"}
    seeds = (f"{counts[0]} seed(s)" if len(counts) == 1 else
             f"{counts[0]}-{counts[-1]} seeds (per method under its name)")
    ax.set_title(f"pseudocode-to-code execution accuracy, {seeds}\n" + "; ".join(what[k] for k in kinds), fontsize=9)
    ax.legend(title="split", loc="upper right")
    fig.tight_layout()
    return fig, ax


# ---- Figure B: where Π fixes f's output ----------------------------------------------------------

def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between two token lists (unit insert, delete, substitute)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def statements(tgt: str) -> list[str]:
    """The statements of a ``.tgt`` string (SANSTYPE: separated by `` $ ``, docs/code-pipeline.md §6)."""
    return [s.strip() for s in re.split(r"(?:^|\s)\$(?=\s|$)", tgt) if s.strip()]


def _id_key(pid: str) -> tuple:
    """Natural order of program ids: ``id-2`` before ``id-10``."""
    return tuple((0, int(t)) if t.isdigit() else (1, t) for t in re.split(r"(\d+)", pid) if t)


@dataclass(frozen=True)
class Candidate:
    """One test program with both outputs and verdicts (what :func:`pick_fix` ranks)."""
    split: str
    id: str
    src: str         # pseudocode
    gold: str        # reference .tgt
    base_tgt: str    # f's output
    fixed_tgt: str   # Π(f)'s output
    base_ok: bool
    fixed_ok: bool

    @property
    def distance(self) -> int:
        """Token edit distance between f's and Π(f)'s outputs (tokens: the format's spaces)."""
        return edit_distance(self.base_tgt.split(), self.fixed_tgt.split())


def pick_fix(cands: list[Candidate]) -> Candidate | None:
    """The program of :data:`PICK_RULE`, or None when no program has f failing and Π∘f passing."""
    for split in (*SPLITS, *sorted({c.split for c in cands} - set(SPLITS))):
        pool = [c for c in cands if c.split == split and not c.base_ok and c.fixed_ok and c.distance > 0]
        if pool:
            return min(pool, key=lambda c: (c.distance, _id_key(c.id)))
    return None


def _split_inputs(folder: Path, split: str) -> tuple[Path, dict[str, Path]]:
    return folder / "data" / f"test_{split}.jsonl", {m: folder / "predictions" / f"{m}_{split}.jsonl"
                                                     for m in (BASE, COMPOSED)}


def fix_inputs(folder: str | Path) -> list[Path]:
    """The files :func:`load_candidates` reads: per split the test data, f's and Π∘f's predictions."""
    return [p for s in SPLITS for data, preds in [_split_inputs(Path(folder), s)] for p in (data, *preds.values())]


def load_candidates(folder: str | Path) -> list[Candidate]:
    """Every test program of one run folder with ``composed-base`` and ``composed`` predictions."""
    for p in fix_inputs(folder):
        if not p.exists():
            raise DataFileError(f"{p}: not found (the fix figure needs the run's test data and the "
                                f"'{BASE}' and '{COMPOSED}' predictions)")
    out = []
    for split in SPLITS:
        data_path, pred_paths = _split_inputs(Path(folder), split)
        examples = {r.get("id"): r for r in read_jsonl(data_path)}
        preds = {}
        for m, p in pred_paths.items():
            try:
                preds[m] = {r["id"]: (r["status"] == "ok", r["tgt"]) for r in read_jsonl(p)}
            except KeyError as err:
                raise DataFileError(f"{p}: records need 'id', 'status' and 'tgt' (missing {err})") from None
        for pid in sorted(set(preds[BASE]) & set(preds[COMPOSED]), key=_id_key):
            if pid not in examples:
                raise DataFileError(f"{pred_paths[BASE]}: program id {pid!r} is not in {data_path}")
            (b_ok, b), (f_ok, f) = preds[BASE][pid], preds[COMPOSED][pid]
            out.append(Candidate(split, pid, examples[pid].get("src", ""), examples[pid].get("tgt", ""),
                                 b, f, b_ok, f_ok))
    return out


def _changed(a: list[str], b: list[str]) -> tuple[set[int], set[int]]:
    """Indices of statements of ``a`` removed/replaced and of ``b`` inserted/replaced (difflib)."""
    ra, rb = set(), set()
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op != "equal":
            ra.update(range(i1, i2))
            rb.update(range(j1, j2))
    return ra, rb


def fix_text(pick: Candidate | None, folder: str | Path) -> str:
    """The .txt beside the figure: the rule, the pick and its raw strings, and a statement diff."""
    head = [f"rule: {PICK_RULE}", f"folder: {folder}"]
    if pick is None:
        return "\n".join(head + ["result: no such program (no test program where f fails and Π∘f passes)", ""])
    a, b = statements(pick.base_tgt), statements(pick.fixed_tgt)
    diff = difflib.unified_diff(a, b, fromfile=f"f ({BASE})", tofile=f"Π(f) ({COMPOSED})", lineterm="", n=99)
    return "\n".join(head + [f"split: {pick.split}", f"id: {pick.id}", f"token edit distance: {pick.distance}",
                             "", "pseudocode:", pick.src, "", "gold:", pick.gold, "", "f output (fails):",
                             pick.base_tgt, "", "Π(f) output (passes):", pick.fixed_tgt, "",
                             "statement diff:", *diff, ""])


def _wrapped(stmts: list[str], marked: set[int], width: int) -> list[tuple[str, bool]]:
    """One display line per ``width`` characters of each statement, carrying its changed mark."""
    return [(line, i in marked) for i, st in enumerate(stmts)
            for line in textwrap.wrap(st, width, subsequent_indent="    ") or [""]]


def plot_fix(pick: Candidate | None, *, width: int = 56):
    """Three monospace columns: pseudocode, f's output, Π(f)'s output; changed statements shaded
    (statement-level :mod:`difflib` diff; long statements wrap at ``width`` characters)."""
    style.apply()
    if pick is None:
        fig, ax = plt.subplots(figsize=(6, 1.2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no test program where {BASE} (f) fails and {COMPOSED} (Π∘f) passes",
                ha="center", va="center", fontsize=9, parse_math=False)
        return fig, ax
    a, b = statements(pick.base_tgt), statements(pick.fixed_tgt)
    ra, rb = _changed(a, b)
    cols = [("pseudocode", _wrapped(statements(pick.src), set(), width), None),
            ("f(x): base predictor alone (fails)", _wrapped(a, ra, width), "#f4b6b6"),
            ("Π(f(x)): composed (passes)", _wrapped(b, rb, width), "#b9e3b0")]
    n = max(len(c[1]) for c in cols)
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.17 * n + 0.8))
    for ax, (title, lines, shade) in zip(axes, cols):
        ax.axis("off")
        ax.set_xlim(0, 1)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_title(title, fontsize=9, loc="left")
        for i, (line, marked) in enumerate(lines):
            box = {"facecolor": shade, "edgecolor": "none", "pad": 0.8} if marked else None
            ax.text(0.0, i, line, family="monospace", fontsize=7, va="center", bbox=box, parse_math=False)
    fig.suptitle(f"Π fixes f: {pick.split.upper()} program {pick.id}, token edit distance {pick.distance} "
                 "(picked by rule, see .txt)", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.55 / fig.get_figheight(), wspace=0.08)
    return fig, axes


# ---- command line --------------------------------------------------------------------------------

def _save(fig, out: Path, stem: str, pdf: bool) -> None:
    if pdf:
        fig.savefig(out / f"{stem}.pdf", bbox_inches="tight")
    style.save(fig, out / f"{stem}.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m figures code", description="figures of the pseudocode-to-code runs")
    ap.add_argument("run_dirs", nargs="+", help="folders written by python -m simulations.code run (one or more per seed)")
    ap.add_argument("--out", default=None, help="folder for the figures (default: FIRST_DIR/figures)")
    args = ap.parse_args(argv)
    try:
        rows = accuracy_rows([v for _, v in load_seeds(args.run_dirs).values()])
        first = Path(args.run_dirs[0])
        missing = [p for p in fix_inputs(first) if not p.exists()]
        pick = None if missing else pick_fix(load_candidates(first))
    except DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else first / "figures"
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / "code_accuracy.csv", [{k: r[k] for k in CSV_FIELDS} for r in rows])
    fig, _ = plot_accuracy(rows)
    _save(fig, out, "code_accuracy", pdf=True)
    written = ["code_accuracy.png", "code_accuracy.pdf", "code_accuracy.csv"]
    if missing:  # a committed results folder keeps verdicts.csv only: the accuracy figure still stands
        print(f"warning: {missing[0]} not found, code_denoiser_fix skipped", file=sys.stderr)
    else:
        atomic_write_text(out / "code_denoiser_fix.txt", fix_text(pick, first))
        fig, _ = plot_fix(pick)
        _save(fig, out, "code_denoiser_fix", pdf=False)
        written += ["code_denoiser_fix.png", "code_denoiser_fix.txt"]
    print(f"[figures] wrote {', '.join(written)} under {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
