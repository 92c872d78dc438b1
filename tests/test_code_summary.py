"""``python -m simulations.code summary``: seed folders, paired bootstrap, refusal of mixed configs."""
from __future__ import annotations

import numpy as np
import pytest

from composedft.io import DataFileError, atomic_write_csv, atomic_write_json, atomic_write_jsonl
from simulations.code import summary as S


def _seed_folder(root, seed, verdicts, **cfg):
    """verdicts: {split: {method: [0/1 per program]}} written as verdicts.csv."""
    d = root / f"seed{seed}"
    atomic_write_json(d / "config.json", {"seed": seed, "tokenizer": "bpe", "d_model": 64, **cfg})
    rows = []
    for split, by_method in verdicts.items():
        n = len(next(iter(by_method.values())))
        for i in range(n):
            rows.append({"split": split, "id": f"p{i}", **{m: v[i] for m, v in by_method.items()}})
    atomic_write_csv(d / "verdicts.csv", rows)
    return d


def test_point_estimate_is_the_exact_mean_paired_difference(tmp_path):
    rng = np.random.default_rng(0)
    folders, exact = [], []
    for seed in range(3):
        a, b = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
        folders.append(_seed_folder(tmp_path, seed, {"id": {"standard": list(b), "composed": list(a)}}))
        exact.append((a - b).mean())
    diffs = S.paired_diffs([S.load_seed(f)[1] for f in folders], "id", "composed", "standard")
    d, lo, hi = S.paired_bootstrap(diffs, n_boot=500)
    assert d == pytest.approx(np.mean(exact), abs=1e-12)
    assert lo <= d <= hi


def test_identical_methods_give_a_zero_width_interval(tmp_path):
    v = [1, 0, 1, 1, 0]
    f = [_seed_folder(tmp_path, s, {"ood": {"standard": v, "composed": v}}) for s in range(2)]
    diffs = S.paired_diffs([S.load_seed(x)[1] for x in f], "ood", "composed", "standard")
    assert S.paired_bootstrap(diffs, n_boot=200) == (0.0, 0.0, 0.0)


def test_one_seed_bootstrap_spread_matches_the_plug_in_standard_error(tmp_path):
    """With one seed the bootstrap of a mean has sd = sd_pop(d) / sqrt(n) (closed form); the
    95% percentile interval is then about +-1.96 of it."""
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2, 400), (rng.random(400) < 0.3).astype(int)
    d = (a - b).astype(float)
    lo_hi = S.paired_bootstrap([d], n_boot=4000, seed=3)
    se = d.std(ddof=0) / np.sqrt(d.size)
    assert (lo_hi[2] - lo_hi[1]) / (2 * 1.96 * se) == pytest.approx(1.0, rel=0.08)


def test_report_has_accuracies_and_comparisons(tmp_path):
    f = [_seed_folder(tmp_path, s, {"id": {"standard": [1, 0, 0, 1], "composed": [1, 1, 0, 1],
                                           "standard+posthoc": [1, 1, 1, 1]}}) for s in range(2)]
    text = S.summarize(f, n_boot=200)
    assert "| composed | 2 | 0.750 [0.750, 0.750] |" in text
    import re
    m = re.search(r"\| composed vs standard \| id \| 2 \| \+0\.250 \[([-+.0-9]+), ([-+.0-9]+)\] \| \+50\.0% \| (.+?) \|", text)
    assert m and float(m[1]) <= 0.25 <= float(m[2])
    assert m[3] == ("composed better" if float(m[1]) > 0 else "no significant difference")
    assert "standard+posthoc vs standard | id | 2 | +0.500" in text
    assert "bt+composed" not in text  # comparisons of absent methods are skipped


def test_a_method_missing_from_one_seed_is_paired_over_the_seeds_that_have_it(tmp_path):
    f = [_seed_folder(tmp_path, 0, {"id": {"standard": [1, 0, 0, 1], "bt": [1, 1, 1, 1]}}),
         _seed_folder(tmp_path, 1, {"id": {"standard": [0, 0, 0, 1]}})]
    text = S.summarize(f, n_boot=200)
    assert "| bt | 1 | 1.000" in text and "| standard | 2 | 0.375" in text


def test_predictions_jsonl_are_read_when_there_is_no_verdicts_csv(tmp_path):
    d = tmp_path / "run"
    atomic_write_json(d / "config.json", {"seed": 0})
    atomic_write_jsonl(d / "predictions" / "standard+posthoc_ood.jsonl",
                       [{"id": "a", "status": "ok"}, {"id": "b", "status": "wrong_answer"}])
    _, v = S.load_seed(d)
    assert v == {"ood": {"standard+posthoc": {"a": 1, "b": 0}}}


def test_mixed_presets_or_tokenizers_are_refused_naming_folder_and_field(tmp_path, capsys):
    a = _seed_folder(tmp_path, 0, {"id": {"standard": [1]}})
    b = _seed_folder(tmp_path, 1, {"id": {"standard": [1]}}, tokenizer="whitespace")
    with pytest.raises(DataFileError, match=r"seed1: .*field 'tokenizer' is 'whitespace'"):
        S.summarize([a, b])
    assert S.main([str(a), str(b)]) == 2
    assert "field 'tokenizer'" in capsys.readouterr().err
    assert S.main([str(tmp_path / "nope")]) == 2
    assert "config.json: not found" in capsys.readouterr().err


def test_a_folder_from_before_a_field_was_added_is_compared_with_the_value_it_had(tmp_path):
    """Π's dropout fields were split off f's: an older seed folder (no denoiser_* dropout fields, Π at
    attn_dropout 0) pairs with a newer one that states Π's 0, and not with one whose Π had 0.2."""
    old = _seed_folder(tmp_path, 0, {"id": {"standard": [1]}}, attn_dropout=0.0, relu_dropout=0.0)
    same = {"attn_dropout": 0.0, "relu_dropout": 0.0, "denoiser_attn_dropout": 0.0, "denoiser_relu_dropout": 0.0}
    new = _seed_folder(tmp_path, 1, {"id": {"standard": [0]}}, **same)
    assert S.summarize([old, new])
    other = _seed_folder(tmp_path, 2, {"id": {"standard": [0]}}, **{**same, "denoiser_attn_dropout": 0.2})
    with pytest.raises(DataFileError, match=r"seed2: .*field 'denoiser_attn_dropout' is 0.2"):
        S.summarize([old, other])


def test_bad_verdict_values_name_file_and_line(tmp_path):
    d = _seed_folder(tmp_path, 0, {"id": {"standard": [1, 0]}})
    (d / "verdicts.csv").write_text("split,id,standard\nid,p0,1\nid,p1,yes\n")
    with pytest.raises(DataFileError, match=r"verdicts.csv:3: column 'standard' must be 0 or 1"):
        S.load_seed(d)


def test_one_seed_accuracy_gets_the_wilson_interval_over_programs(tmp_path):
    """A method with one seed: 13 of 20 programs pass; the closed-form Wilson interval
    (p + z²/2n ± z sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), marked as over programs."""
    v = [1] * 13 + [0] * 7
    text = S.summarize([_seed_folder(tmp_path, 0, {"id": {"standard": v}})], n_boot=50)
    z, n, p = 1.959963984540054, 20, 13 / 20
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert f"| standard | 1 | 0.650 [{c - h:.3f}, {c + h:.3f}]* |" in text
    assert "one seed: 95% Wilson interval over programs" in text


def test_the_composed_rate_chosen_on_validation_is_printed_per_seed(tmp_path):
    v = {"id": {"standard": [1, 0], "composed": [1, 1], "bt+composed": [0, 1]}}
    a, b = _seed_folder(tmp_path, 0, v), _seed_folder(tmp_path, 1, v)
    atomic_write_json(a / "manifest.json", {"stages": {"bt+composed": {"selected_lr": 1e-4},
                                                       "composed": {"selected_lr": 3e-5, "lr_grid": []},
                                                       "standard": {"best_step": 2}}})
    text = S.summarize([a, b], n_boot=200)
    assert "chosen on validation (composed_lr_grid): seed 0: composed 3e-05, bt+composed 0.0001\n" in text
    assert "seed 1:" not in text  # no manifest: nothing claimed
    assert S.selected_rates(b) == {} and S.selected_rates(a) == {"composed": 3e-5, "bt+composed": 1e-4}
    atomic_write_json(a / "manifest.json", {"stages": {"composed": {"best_step": 3}}})
    assert "composed_lr_grid" not in S.summarize([a, b], n_boot=200)  # a fixed rate: no line


def test_folders_of_one_seed_are_joined_and_paired_as_one_seed(tmp_path):
    """seed 0 in two folders (standard; composed-denoiser-init run later) and seed 1 in one: the
    joined report equals the report of the same verdicts written as one folder per seed."""
    std0, cdi0 = [1, 0, 1, 1], [0, 0, 1, 0]
    std1, cdi1 = [0, 1, 1, 1], [0, 1, 0, 0]
    a = _seed_folder(tmp_path / "a", 0, {"id": {"standard": std0}})
    b = _seed_folder(tmp_path / "b", 0, {"id": {"composed-denoiser-init": cdi0}})
    c = _seed_folder(tmp_path / "c", 1, {"id": {"standard": std1, "composed-denoiser-init": cdi1}})
    whole = [_seed_folder(tmp_path / "w", 0, {"id": {"standard": std0, "composed-denoiser-init": cdi0}}),
             _seed_folder(tmp_path / "w", 1, {"id": {"standard": std1, "composed-denoiser-init": cdi1}})]
    split_text, whole_text = S.summarize([a, b, c], n_boot=300), S.summarize(whole, n_boot=300)
    assert split_text.splitlines()[0] == f"seeds: 2 (0, 1); seed 0: {a}, {b}"
    assert split_text.splitlines()[1:] == whole_text.splitlines()[1:]
    # the point estimate is the mean over seeds of the per-seed mean paired difference (cdi - standard)
    exact = np.mean([np.mean(np.subtract(cdi0, std0)), np.mean(np.subtract(cdi1, std1))])
    assert f"| composed-denoiser-init vs standard | id | 2 | {exact:+.3f}" in split_text
    assert "| composed-denoiser-init | 2 |" in split_text


def test_a_method_twice_in_one_seed_or_other_programs_are_refused(tmp_path, capsys):
    a = _seed_folder(tmp_path / "a", 0, {"id": {"standard": [1, 0]}})
    b = _seed_folder(tmp_path / "b", 0, {"id": {"standard": [0, 0], "composed": [1, 1]}})
    with pytest.raises(DataFileError, match=r"b/seed0: method 'standard' \(id\) of seed 0 is also in .*a/seed0"):
        S.summarize([a, b])
    c = _seed_folder(tmp_path / "c", 0, {"id": {"composed": [1, 1, 1]}})  # 3 programs, not 2
    with pytest.raises(DataFileError, match=r"c/seed0: the id programs of 'composed' differ from those of 'standard'"):
        S.summarize([a, c])
    assert S.main([str(a), str(c)]) == 2 and "differ" in capsys.readouterr().err
    d = _seed_folder(tmp_path / "d", 1, {"id": {"standard": [1, 1]}})  # another seed: not a clash
    assert "seeds: 2 (0, 1)" in S.summarize([a, d], n_boot=100)


def test_the_rates_of_a_seeds_parts_are_printed_together(tmp_path):
    a = _seed_folder(tmp_path / "a", 0, {"id": {"standard": [1, 0], "composed": [1, 1]}})
    b = _seed_folder(tmp_path / "b", 0, {"id": {"composed-denoiser-init": [0, 1]}})
    atomic_write_json(a / "manifest.json", {"stages": {"composed": {"selected_lr": 3e-5}}})
    atomic_write_json(b / "manifest.json", {"stages": {"composed-denoiser-init": {"selected_lr": 3e-4}}})
    assert "(composed_lr_grid): seed 0: composed 3e-05, composed-denoiser-init 0.0003\n" in S.summarize([a, b], n_boot=100)


def test_folders_with_different_denoiser_curves_are_named(tmp_path):
    """Π's validation curve is the saved trace of Π: equal text, one Π; other text, a line naming
    which folders share which Π (and no line when all agree)."""
    a = _seed_folder(tmp_path / "a", 0, {"id": {"standard": [1, 0]}})
    b = _seed_folder(tmp_path / "b", 0, {"id": {"direct": [0, 1]}})
    c = _seed_folder(tmp_path / "c", 1, {"id": {"standard": [1, 1]}})
    curve = "step,val_nll\n250,0.59\n500,0.21\n"
    for d in (a, b):
        (d / "curves").mkdir()
        (d / "curves" / "denoiser.csv").write_text(curve)
    (c / "stages" / "denoiser").mkdir(parents=True)
    (c / "stages" / "denoiser" / "eval.csv").write_text(curve)
    assert "denoiser:" not in S.summarize([a, b, c], n_boot=100)
    (b / "curves" / "denoiser.csv").write_text(curve.replace("0.21", "0.24"))
    assert S.denoiser_groups([str(a), str(b), str(c)]) == [[str(a), str(c)], [str(b)]]
    assert f"denoiser: 2 different Π (validation curves differ): Π1: {a}, {c}; Π2: {b}\n" in S.summarize([a, b, c], n_boot=100)
