"""figures/code.py on synthetic saved run folders: the fix-picking rule (exact pick, ties, ID
before OOD, none found) and the accuracy table's intervals against independent formulas."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from composedft.io import atomic_write_csv, atomic_write_jsonl
from figures import code as F
from figures.__main__ import main as figures_main

Z = stats.norm.ppf(0.975)


def _tgt(stmts: list[str]) -> str:
    return "int main () { $ " + " $ ".join(stmts) + " $ return 0; }"


BASE_STMTS = ["int a ;", "cin >> a ;", "a = a + 1 ;", "cout << a ;"]


def _edit(k: int) -> list[str]:
    """BASE_STMTS with exactly k tokens substituted (statement 3: 'a = a + 1 ;' has 6 tokens)."""
    toks = BASE_STMTS[2].split()
    for i in range(k):
        toks[i] = f"x{i}"
    return BASE_STMTS[:2] + [" ".join(toks)] + BASE_STMTS[3:]


def _write_run(root, programs: dict[str, list[tuple]], seed: int = 0):
    """A run folder: config.json, data/test_<split>.jsonl, predictions of composed-base and composed.

    ``programs[split]`` holds ``(id, base_ok, fixed_ok, k)``: f's output is BASE_STMTS, Π(f)'s has
    k tokens substituted, so the token edit distance is exactly k.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"seed": seed, "preset": "toy"}))
    for split in F.SPLITS:
        rows = programs.get(split, [])
        atomic_write_jsonl(root / "data" / f"test_{split}.jsonl",
                           [{"id": pid, "src": f"pseudo {pid} $ read a $ print a", "tgt": _tgt(BASE_STMTS),
                             "cases": [], "probid": ""} for pid, *_ in rows])
        for method, idx in ((F.BASE, 1), (F.COMPOSED, 2)):
            atomic_write_jsonl(root / "predictions" / f"{method}_{split}.jsonl",
                               [{"id": r[0], "status": "ok" if r[idx] else "wrong_answer", "code": "",
                                 "tgt": _tgt(BASE_STMTS if method == F.BASE else _edit(r[3])), "detail": ""}
                                for r in rows])


# ID: id-10 and id-2 tie at distance 1 (natural order picks id-2; string order would pick id-10);
# the others are ineligible: f passes, Π∘f fails, or both outputs are equal (distance 0)
HAND_MADE = {
    "id": [("id-0", True, True, 1), ("id-1", False, False, 1), ("id-3", False, True, 2), ("id-10", False, True, 1),
           ("id-2", False, True, 1), ("id-4", True, False, 1), ("id-5", False, True, 0)],
    "ood": [("ood-0", False, True, 1)],
}


def test_edit_distance_closed_cases():
    assert F.edit_distance(list("kitten"), list("sitting")) == 3
    assert F.edit_distance([], list("abc")) == 3 and F.edit_distance(list("abc"), list("abc")) == 0
    assert F.edit_distance(list("ab"), list("ba")) == 2  # no transpositions
    a, b = _tgt(BASE_STMTS).split(), _tgt(_edit(3)).split()
    assert F.edit_distance(a, b) == F.edit_distance(b, a) == 3


def test_statements_split_on_the_separator():
    assert F.statements(" $ read a;  $ print a;  $ ") == ["read a;", "print a;"]
    assert F.statements(_tgt(BASE_STMTS)) == ["int main () {", *BASE_STMTS, "return 0; }"]


def test_pick_is_exact_with_natural_id_ties_and_id_before_ood(tmp_path):
    _write_run(tmp_path / "r", HAND_MADE)
    cands = F.load_candidates(tmp_path / "r")
    assert [c.distance for c in cands if c.split == "id"] == [1, 1, 1, 2, 1, 0, 1]  # natural id order
    pick = F.pick_fix(cands)
    assert (pick.split, pick.id, pick.distance) == ("id", "id-2", 1)
    # without id-2 the tie goes to id-10; OOD is never looked at while ID has a candidate
    pick = F.pick_fix([c for c in cands if c.id != "id-2"])
    assert (pick.split, pick.id) == ("id", "id-10")
    pick = F.pick_fix([c for c in cands if c.id not in ("id-2", "id-10")])
    assert (pick.id, pick.distance) == ("id-3", 2)  # even though ood-0 is closer
    pick = F.pick_fix([c for c in cands if c.split == "ood" or c.id in ("id-0", "id-1", "id-4", "id-5")])
    assert (pick.split, pick.id) == ("ood", "ood-0")


def test_cli_writes_the_pick_and_the_none_found_case(tmp_path):
    _write_run(tmp_path / "r", HAND_MADE)
    assert figures_main(["code", str(tmp_path / "r"), "--out", str(tmp_path / "fig")]) == 0
    txt = (tmp_path / "fig" / "code_denoiser_fix.txt").read_text()
    assert "id: id-2\n" in txt and "token edit distance: 1\n" in txt and _tgt(_edit(1)) in txt
    assert "-a = a + 1 ;\n+x0 = a + 1 ;" in txt  # the changed statement, and only it, in the diff
    for name in ("code_accuracy.png", "code_accuracy.pdf", "code_denoiser_fix.png"):
        assert (tmp_path / "fig" / name).stat().st_size > 1000
    none = {s: [r for r in rows if not (not r[1] and r[2] and r[3] > 0)] for s, rows in HAND_MADE.items()}
    _write_run(tmp_path / "n", none)
    assert figures_main(["code", str(tmp_path / "n"), "--out", str(tmp_path / "fign")]) == 0
    assert "no such program" in (tmp_path / "fign" / "code_denoiser_fix.txt").read_text()
    assert (tmp_path / "fign" / "code_denoiser_fix.png").stat().st_size > 1000


def _verdict_run(root, seed: int, verdicts: dict[str, dict[str, list[int]]]):
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"seed": seed, "preset": "toy"}))
    rows = []
    for split, by_method in verdicts.items():
        n = len(next(iter(by_method.values())))
        rows += [{"split": split, "id": f"{split}-{i}", **{m: v[i] for m, v in by_method.items()}} for i in range(n)]
    atomic_write_csv(root / "verdicts.csv", rows)


def _read_table(path) -> dict[tuple[str, str], dict]:
    with open(path, newline="") as fh:
        return {(r["method"], r["split"]): r for r in csv.DictReader(fh)}


def test_accuracy_table_one_seed_is_wilson_over_programs(tmp_path, capsys):
    v = {"id": {"standard": [1] * 7 + [0] * 3, "composed": [1] * 10}, "ood": {"standard": [0] * 9 + [1],
                                                                              "composed": [1, 0] * 5}}
    _verdict_run(tmp_path / "s0", 0, v)
    assert figures_main(["code", str(tmp_path / "s0"), "--out", str(tmp_path / "fig")]) == 0
    assert "code_denoiser_fix skipped" in capsys.readouterr().err  # no predictions/: figure A only
    table = _read_table(tmp_path / "fig" / "code_accuracy.csv")
    assert len(table) == 4
    for split, by_method in v.items():
        for m, xs in by_method.items():
            n, p = len(xs), np.mean(xs)  # Wilson score interval, closed form
            centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
            half = Z / (1 + Z**2 / n) * np.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
            r = table[(m, split)]
            assert float(r["mean"]) == pytest.approx(p, abs=1e-12)
            assert float(r["lo"]) == pytest.approx(centre - half, abs=1e-9)
            assert float(r["hi"]) == pytest.approx(centre + half, abs=1e-9)
            assert (r["n_seeds"], r["n_programs"], r["interval"]) == ("1", str(n), F.WILSON_KIND)


def test_accuracy_table_several_seeds_is_a_t_interval_over_seeds(tmp_path):
    rng = np.random.default_rng(0)
    seeds = [{s: {m: rng.integers(0, 2, 12).tolist() for m in ("standard", "composed")} for s in F.SPLITS}
             for _ in range(3)]
    for i, v in enumerate(seeds):
        _verdict_run(tmp_path / f"s{i}", i, v)
    assert figures_main(["code", *(str(tmp_path / f"s{i}") for i in range(3)), "--out", str(tmp_path / "fig")]) == 0
    table = _read_table(tmp_path / "fig" / "code_accuracy.csv")
    for (m, split), r in table.items():
        accs = np.array([np.mean(v[split][m]) for v in seeds])
        lo, hi = stats.t.interval(0.95, len(accs) - 1, loc=accs.mean(), scale=stats.sem(accs))
        assert float(r["mean"]) == pytest.approx(accs.mean(), abs=1e-12)
        assert (float(r["lo"]), float(r["hi"])) == pytest.approx((lo, hi), abs=1e-9)
        assert (r["n_seeds"], r["n_programs"], r["interval"]) == ("3", "36", F.T_KIND)


def test_folders_of_one_seed_are_one_seed_in_the_accuracy_table(tmp_path):
    """Seed 0's bt verdicts in a second folder: bt counts one seed (Wilson), standard two (t)."""
    std = {0: [1, 0, 1, 1], 1: [0, 0, 1, 1]}
    _verdict_run(tmp_path / "s0", 0, {s: {"standard": std[0]} for s in F.SPLITS})
    _verdict_run(tmp_path / "s0-bt", 0, {s: {"bt": [1, 1, 1, 0]} for s in F.SPLITS})
    _verdict_run(tmp_path / "s1", 1, {s: {"standard": std[1]} for s in F.SPLITS})
    assert figures_main(["code", *(str(tmp_path / d) for d in ("s0", "s0-bt", "s1")), "--out", str(tmp_path / "f")]) == 0
    table = _read_table(tmp_path / "f" / "code_accuracy.csv")
    assert (table["bt", "id"]["n_seeds"], table["bt", "id"]["interval"]) == ("1", F.WILSON_KIND)
    assert float(table["bt", "id"]["mean"]) == pytest.approx(0.75)
    assert (table["standard", "ood"]["n_seeds"], table["standard", "ood"]["interval"]) == ("2", F.T_KIND)
    assert float(table["standard", "ood"]["mean"]) == pytest.approx(np.mean([np.mean(std[0]), np.mean(std[1])]))


def test_bad_folder_is_a_one_line_error(tmp_path, capsys):
    assert figures_main(["code", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "config.json" in err and "Traceback" not in err
    _write_run(tmp_path / "r", HAND_MADE)
    atomic_write_jsonl(tmp_path / "r" / "predictions" / "composed_ood.jsonl", [{"id": "ood-0", "status": "ok"}])
    assert figures_main(["code", str(tmp_path / "r")]) == 2
    assert "composed_ood.jsonl: records need 'id', 'status' and 'tgt'" in capsys.readouterr().err


def _shaded(ax) -> list[str]:
    return [t.get_text() for t in ax.texts if t.get_bbox_patch() is not None]


def test_fix_figure_shades_exactly_the_changed_statements(tmp_path):
    _write_run(tmp_path / "r", HAND_MADE)
    pick = F.pick_fix(F.load_candidates(tmp_path / "r"))
    fig, axes = F.plot_fix(pick)
    assert _shaded(axes[0]) == [] and _shaded(axes[1]) == ["a = a + 1 ;"] and _shaded(axes[2]) == ["x0 = a + 1 ;"]
    # an inserted statement is shaded on Π(f)'s side only; a long one is wrapped, every piece shaded
    long = "cout << " + " << ".join(f"v{i}" for i in range(30)) + " ;"
    ins = F.Candidate("id", "id-9", "p", "g", _tgt(BASE_STMTS), _tgt(BASE_STMTS[:2] + [long] + BASE_STMTS[2:]),
                      False, True)
    fig, axes = F.plot_fix(ins, width=40)
    assert _shaded(axes[1]) == []
    pieces = _shaded(axes[2])
    assert len(pieces) > 1 and " ".join(p.strip() for p in pieces) == long


def test_tick_labels_name_the_seed_count_only_when_methods_differ_in_it():
    def row(m, split, n):
        return {"method": m, "split": split, "n_seeds": n}
    same = [row("standard", "id", 3), row("standard", "ood", 3), row("composed", "id", 3)]
    assert F.tick_labels(same) == ["standard", "composed"]
    mixed = [row("standard", "id", 3), row("standard", "ood", 3), row("bt", "id", 1), row("bt", "ood", 1)]
    assert F.tick_labels(mixed) == ["standard\n(3 seeds)", "bt\n(1 seed)"]
