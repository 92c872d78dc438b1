"""Test splits: user-given test_id / test_ood files, and the SPoC split rule (stage_data)."""
from __future__ import annotations

from dataclasses import replace

import pytest

from composedft.config import apply_overrides
from composedft.io import DataFileError
from simulations.code import pipeline, stage_data
from simulations.code.config import PRESETS
from simulations.code.context import read_examples
from simulations.code.data import Example, TestCase, default_data_dir, write_sanstype
from simulations.code.sanstype import REFERENCE, generate_programs

DATA = default_data_dir()


def _user_split(prefix, n, seed, ood=False, cases=True):
    progs = generate_programs(n, seed, ood=ood, cfg=REFERENCE, id_prefix="u-")
    write_sanstype(prefix, [Example(p.id, p.src, p.tgt, (TestCase("", f"out{i}"),) if cases else ())
                            for i, p in enumerate(progs)])
    return progs


def _cfg(tmp_path, **kw):
    return apply_overrides(PRESETS["toy"], {"n_unlabeled": 50, "n_val": 10, "n_labeled": 30, "device": "cpu", **kw})


@pytest.mark.data
def test_user_splits_replace_the_generated_ones(tmp_path):
    """--test_id/--test_ood take a SANSTYPE prefix; the run uses exactly those programs (a seeded
    subsample of n_test_* of them, 0 = all) and records the files it used."""
    ids = _user_split(tmp_path / "u" / "test", 12, 1)
    ood = _user_split(tmp_path / "u" / "ood", 9, 2, ood=True)
    cfg = _cfg(tmp_path, test_id=str(tmp_path / "u" / "test"), test_ood=str(tmp_path / "u" / "ood"),
               n_test_id=5, n_test_ood=0)
    pipeline.run(cfg, tmp_path / "run", ("data",))
    got_id = read_examples(tmp_path / "run" / "data" / "test_id.jsonl")
    got_ood = read_examples(tmp_path / "run" / "data" / "test_ood.jsonl")
    assert len(got_id) == 5 and {e.tgt for e in got_id} <= {p.tgt for p in ids}
    assert [e.tgt for e in got_ood] == [p.tgt for p in ood]  # all of them, in file order
    assert [c.output for e in got_ood for c in e.cases] == [f"out{i}" for i in range(9)]
    info = (tmp_path / "run" / "data" / "info.json").read_text()
    assert str(tmp_path / "u" / "test") in info and str(tmp_path / "u" / "ood") in info


@pytest.mark.data
def test_bad_user_splits_are_clear_errors(tmp_path, capsys):
    _user_split(tmp_path / "nocases", 4, 3, cases=False)
    for value, msg in ((tmp_path / "missing", "missing.src: file not found"),
                       (tmp_path / "nocases", "has no test cases"),
                       (tmp_path / "x.tsv", "is not a SANSTYPE split prefix")):
        with pytest.raises(DataFileError, match=msg):
            pipeline.run(_cfg(tmp_path, test_ood=str(value)), tmp_path / f"run-{value.name}", ("data",))
    argv = ["--preset", "toy", "--out", str(tmp_path / "cli"), "--stages", "data", f"--test_id={tmp_path / 'missing'}"]
    assert pipeline.main(argv) == 2 and "missing.src" in capsys.readouterr().err


@pytest.mark.data
def test_spoc_split_rule():
    """ID = TestW programs of problems seen in training; OOD = programs of held-out problems, never
    trained on; counts recorded. With test_ood (TestP) no problem is held out."""
    cfg = replace(PRESETS["spoc-paper"], spoc_corruptions=0, n_test_id=0, n_test_ood=0, spoc_ood_problems=15)
    train, val, test_id, test_ood, _, extra = stage_data.spoc_data(cfg)
    seen = {e.probid for e in train}
    assert test_id and all(e.probid in seen for e in test_id)
    held = set(extra["held_out_problems"])
    assert len(held) == 15 and {e.probid for e in test_ood} == held
    assert not held & ({e.probid for e in train} | {e.probid for e in val})
    c = extra["split_counts"]
    assert c["id_programs"] == len(test_id) < c["testw_programs"] == 1749
    assert c["ood_programs"] == len(test_ood) and "seen in training" in extra["split_rule"]
    testw = str(DATA / "spoc" / "testw.tsv")
    cfg2 = replace(cfg, test_ood=testw)
    train2, _, _, ood2, _, extra2 = stage_data.spoc_data(cfg2)
    assert extra2["held_out_problems"] == [] and len(ood2) == 1749 and extra2["split_files"]["ood"] == testw
    assert len(train2) > len(train)
