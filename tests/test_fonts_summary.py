"""Font summary and figures from saved results only: intervals against a direct t computation, bad files."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from composedft.io import DataFileError, atomic_write_csv
from figures.__main__ import main as figures_main
from simulations.fonts.stages import METHOD_NAMES, RESULT_FIELDS
from simulations.fonts.summary import load_results, main as summary_main, markdown, summarize

MSE = {"direct": [0.20, 0.22, 0.27], "direct+posthoc": [0.18, 0.2, 0.21], "composed": [0.15, 0.16, 0.2],
       "composed-base": [0.3, 0.31, 0.35]}


def fake_runs(root, with_samples=True):
    dirs = []
    for seed in range(3):
        d = root / f"seed{seed}"
        rows = [{"method": m, "split": s, "mse": MSE[m][seed] + (0.1 if s == "test" else 0.0), "seed": seed,
                 "f_norm": 10.0 * (1 + seed) + len(m), "best_step": 100, "n": 31}
                for m in METHOD_NAMES for s in ("train", "val", "test")]
        atomic_write_csv(d / "results.csv", rows, RESULT_FIELDS)
        if with_samples:
            rng = np.random.default_rng(seed)
            arrays = {m: rng.uniform(-1, 1, (3, 1, 32, 32)) for m in ("target", *METHOD_NAMES)}
            np.savez(d / "samples.npz", pairs=np.array([[0, 1], [1, 2], [2, 61]]),
                     chars=np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")), **arrays)
        dirs.append(d)
    return dirs


def test_summary_is_the_t_interval_over_seeds(tmp_path):
    rows = load_results(fake_runs(tmp_path, with_samples=False))
    summary = {s["method"]: s for s in summarize(rows, "test")}
    assert list(summary) == list(METHOD_NAMES)
    v = np.array(MSE["composed"]) + 0.1
    half = stats.t.ppf(0.975, 2) * v.std(ddof=1) / np.sqrt(3)
    assert summary["composed"]["mse"] == pytest.approx((v.mean(), v.mean() - half, v.mean() + half), rel=1e-12)
    assert summary["composed"]["seeds"] == [0, 1, 2]
    assert summary["direct"]["f_norm"][0] == pytest.approx(20.0 + len("direct"))
    table = markdown(list(summary.values()))
    assert table.count("\n") == 1 + len(METHOD_NAMES) and f"{v.mean():.4f}" in table


def test_bad_results_file_names_the_file(tmp_path, capsys):
    d = tmp_path / "bad"
    atomic_write_csv(d / "results.csv", [{"method": "direct", "split": "test", "mse": "oops", "seed": 0, "f_norm": 1}])
    with pytest.raises(DataFileError, match=r"results.csv: line 2"):
        load_results([d])
    atomic_write_csv(d / "results.csv", [{"method": "direct", "split": "test", "mse": 1.0}])
    assert summary_main([str(d)]) == 2
    assert "missing column(s) seed, f_norm" in capsys.readouterr().err
    assert summary_main([str(tmp_path / "nothing")]) == 2


def test_figures_render_from_saved_results(tmp_path):
    dirs = fake_runs(tmp_path)
    out = tmp_path / "figs"
    assert figures_main(["fonts", *map(str, dirs), "--out", str(out)]) == 0
    for name in ("samples.png", "mse.png"):
        assert (out / name).stat().st_size > 1000
