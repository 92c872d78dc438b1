"""A smoke-size sweep writes the tidy CSV with every method; an interrupted sweep resumes exactly."""
import dataclasses

import pytest

from composedft.io import read_csv
from simulations.relu import sweep
from simulations.relu.__main__ import main
from simulations.relu.config import PRESETS, ReluConfig, validate
from composedft.config import ConfigError

REQUIRED = ["method", "seed", "n_train", "k", "delta", "sigma", "lam", "width", "weight_norm",
            "path_norm", "fn_norm", "id_mse", "id_err", "ood_mse", "ood_err", "train_loss", "denoiser_err"]
TINY = ["--preset", "smoke", "--steps=15", "--denoiser_steps=3", "--seeds=2", "--n_test=16",
        "--n_train=12", "--width=6", "--sweep_k=4,5", "--sweep_delta=0.25,0.5", "--curve_points=20",
        "--lam=0", "--weight_decay=1e-3", "--delta=0.5", "--pack_rows=1",
        "--methods=direct,standard,composed,posthoc,composed_scratch"]  # pack_rows=1: one computation per axis


def test_tiny_sweep_writes_all_columns_and_methods(tmp_path):
    assert main([*TINY, "--out", str(tmp_path)]) == 0
    rows = read_csv(tmp_path / "results.csv")
    assert set(REQUIRED) <= set(rows[0])
    methods = {"direct", "standard", "composed", "posthoc", "composed_scratch"}
    assert {r["method"] for r in rows} == methods
    # 4 settings (base k=8 is not on the k axis: base + 4 + 5; delta 0.25 new, 0.5 = base) x 2 seeds
    assert len(rows) == 4 * 2 * len(methods)
    assert (tmp_path / "manifest.json").exists() and (tmp_path / "curves.npz").exists()
    for r in rows:
        assert float(r["fn_norm"]) <= float(r["path_norm"]) * (1 + 1e-9) <= 2 * float(r["weight_norm"]) * (1 + 1e-9)
        assert 0.0 <= float(r["ood_err"]) <= 1.0
    post = {(r["seed"], r["k"], r["delta"]): r for r in rows if r["method"] == "posthoc"}
    std = {(r["seed"], r["k"], r["delta"]): r for r in rows if r["method"] == "standard"}
    assert all(post[key]["fn_norm"] == std[key]["fn_norm"] for key in post)  # post-hoc reuses standard's f


def test_resume_skips_finished_settings_and_gives_identical_rows(tmp_path, monkeypatch):
    full, part = tmp_path / "full", tmp_path / "part"
    assert main([*TINY, "--out", str(full)]) == 0

    class Stop(Exception):
        pass

    real = sweep.run_sweep

    def interrupted(cfg, out, **kw):
        def stop(axis):
            raise Stop(axis)
        return real(cfg, out, after_group=stop, **kw)

    monkeypatch.setattr("simulations.relu.__main__.run_sweep", interrupted)
    with pytest.raises(Stop):
        main([*TINY, "--out", str(part)])
    first = read_csv(part / "results.csv")
    assert 0 < len(first) < len(read_csv(full / "results.csv"))

    calls = []
    real_group = sweep.run_group
    monkeypatch.setattr("simulations.relu.__main__.run_sweep", real)
    monkeypatch.setattr(sweep, "run_group", lambda cfg, settings, *a, **k: calls.append(settings) or real_group(cfg, settings, *a, **k))
    assert main([*TINY, "--out", str(part)]) == 0
    finished = {(int(r["k"]), float(r["delta"])) for r in first}
    assert calls and all((s.k, s.delta) not in finished for group in calls for s in group)
    assert read_csv(part / "results.csv") == read_csv(full / "results.csv")
    assert read_csv(part / "trajectories.csv") == read_csv(full / "trajectories.csv")


def test_trajectories_start_at_the_denoiser_and_end_at_the_results(tmp_path):
    assert main([*TINY, "--record_every=5", "--out", str(tmp_path)]) == 0
    res = read_csv(tmp_path / "results.csv")
    traj = read_csv(tmp_path / "trajectories.csv")
    key = lambda r: (r["method"], r["seed"], r["k"], r["delta"])  # noqa: E731
    by = {}
    for r in traj:
        by.setdefault(key(r), []).append(r)
    trained = [r for r in res if r["method"] != "posthoc"]  # post-hoc trains nothing: no trajectory
    assert sorted(by) == sorted(map(key, trained))
    for r in trained:
        t = sorted(by[key(r)], key=lambda q: int(q["step"]))
        assert [int(q["step"]) for q in t] == [0, 5, 10, 15]
        # the last record is the trained network the results describe
        assert float(t[-1]["fn_norm"]) == pytest.approx(float(r["fn_norm"]), rel=1e-12)
        assert float(t[-1]["objective"]) == pytest.approx(float(r["train_objective"]), rel=1e-12)
        if r["method"] in ("standard", "composed"):  # both start from the denoiser's weights
            assert float(t[0]["fn_norm"]) == pytest.approx(float(r["denoiser_fn_norm"]), rel=1e-12)


def test_packed_axes_give_the_rows_of_separate_computations(tmp_path):
    """Packing axes into one stack changes only the batch, not any network's training."""
    assert main([*TINY, "--out", str(tmp_path / "sep")]) == 0
    assert main([*TINY, "--pack_rows=1000", "--sweep_wd=0.01", "--out", str(tmp_path / "packed")]) == 0
    sep = read_csv(tmp_path / "sep" / "results.csv")
    packed = [r for r in read_csv(tmp_path / "packed" / "results.csv") if r["weight_decay"] != "0.01"]
    key = lambda r: (r["method"], r["seed"], r["k"], r["delta"])  # noqa: E731
    assert sorted(map(key, sep)) == sorted(map(key, packed))
    by_key = {key(r): r for r in packed}
    for r in sep:
        for col in ("fn_norm", "id_mse", "ood_mse", "train_objective"):
            assert float(by_key[key(r)][col]) == pytest.approx(float(r[col]), rel=1e-7, abs=1e-10)
    wd_rows = [r for r in read_csv(tmp_path / "packed" / "results.csv") if r["weight_decay"] == "0.01"]
    assert len(wd_rows) == 2 * 5  # the weight-decay axis adds one setting x 2 seeds x 5 methods


def test_rows_do_not_depend_on_the_thread_count(tmp_path):
    assert main([*TINY, "--threads=1", "--out", str(tmp_path / "one")]) == 0
    assert main([*TINY, "--threads=2", "--out", str(tmp_path / "two")]) == 0
    assert read_csv(tmp_path / "one" / "results.csv") == read_csv(tmp_path / "two" / "results.csv")


def test_help_lists_every_field_with_the_presets_value(capsys):
    assert main(["--preset", "smoke", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--steps=30000" in out and "--sweep_k=4,8" in out and "--record_every=1000" in out
    assert main(["--preset", "smoke"]) == 2 and "--out is required" in capsys.readouterr().err


def test_bad_config_is_refused_naming_the_field(tmp_path, capsys):
    assert main(["--preset", "smoke", "--k=2", "--out", str(tmp_path)]) == 2
    assert "'k'" in capsys.readouterr().err
    assert main(["--preset", "smoke", "--nonsense=1", "--out", str(tmp_path)]) == 2
    with pytest.raises(ConfigError, match="sweep_delta"):
        validate(dataclasses.replace(ReluConfig(), sweep_delta=(0.0,)))


def test_smoke_preset_covers_the_done_when_comparison():
    cfg = PRESETS["smoke"]
    assert {"direct", "standard", "composed", "posthoc"} <= set(cfg.methods)
    assert len(set(cfg.sweep_k)) >= 2 or len(set(cfg.sweep_delta)) >= 2
    assert PRESETS["full"].seeds >= 10


def test_relu_study_uses_the_core_registry():
    """Methods come from composedft.methods; the study implements objectives as loss weights."""
    from composedft.methods import METHODS, Method, register_method, training_phases
    from simulations.relu import methods as M

    cfg = dataclasses.replace(ReluConfig(), composed_init="standard")
    base = sweep.Setting.base(cfg)
    assert training_phases(["direct", "standard", "composed", "posthoc"], cfg) == [["direct", "standard"], ["composed"]]
    assert M.objective_of("standard").std_weight(cfg, base) == 1.0 and M.objective_of("direct").comp_weight(cfg, base) == 0.0
    assert M.objective_of("composed").std_weight(cfg, base) == base.lam and M.objective_of("composed").comp_weight(cfg, base) == 1.0
    assert M.objective_of("composed_scratch") is M.objective_of("composed")
    register_method(Method("ridge_ft", "denoiser", "ridge", False))
    try:
        with pytest.raises(ValueError, match="no implementation of objective 'ridge'"):
            M.objective_of("ridge_ft")
        M.register_objective("ridge", M.ReluObjective(lambda c, s: 1.0, lambda c, s: 0.0))
        with pytest.raises(ValueError, match="already registered"):
            M.register_objective("ridge", M.ReluObjective(lambda c, s: 1.0, lambda c, s: 0.0))
        assert M.objective_of("ridge_ft").std_weight(cfg, base) == 1.0
    finally:
        METHODS.pop("ridge_ft", None), M.OBJECTIVES.pop("ridge", None)


@pytest.mark.slow
def test_smoke_preset_reproduces_the_papers_two_claims(tmp_path):
    """The issue's acceptance run (~40 s): at the largest k, standard's mean R(f) >= 3x composed's
    and composed's mean OOD error is lower (paper_repro.md §2 records the numbers)."""
    from simulations.relu import summary
    assert main(["--preset", "smoke", "--out", str(tmp_path)]) == 0
    rows = summary.load_rows(tmp_path)
    assert {r["method"] for r in rows} >= {"direct", "standard", "composed", "posthoc"}
    (line,) = summary.claims(rows, ratio=3.0, run_dir=tmp_path)
    assert line.startswith("- max k = 8") and line.count("holds") == 2, line
