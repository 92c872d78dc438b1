"""The ReLU summary: t-intervals against closed forms, and the claim check on hand-made results."""
import csv
import math

import pytest

from composedft.stats import mean_ci
from simulations.relu import summary
from simulations.relu.sweep import COLUMNS


def test_mean_ci_matches_the_t_table():
    # n = 3, sd = 1: half-width t_{0.975, 2} / sqrt(3), t_{0.975, 2} = 4.302652729... (t table)
    m, lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and hi - m == pytest.approx(4.302652729 / math.sqrt(3), rel=1e-9) and m - lo == pytest.approx(hi - m)
    # large n: the t quantile tends to the normal 1.959964
    vals = [(-1) ** i for i in range(20000)]
    m, lo, hi = mean_ci(vals)
    assert hi - m == pytest.approx(1.959964 * 1.0 / math.sqrt(20000), rel=1e-3)
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    assert all(math.isnan(v) for v in mean_ci([float("nan")]))


def _write(path, rows):
    with open(path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, 0) for c in COLUMNS})


def _row(method, seed, k, delta, fn_norm, ood_err):
    return dict(method=method, seed=seed, n_train=64, k=k, delta=delta, sigma=0.2, lam=0.1, width=32,
                weight_decay=0.002, fn_norm=fn_norm, id_err=0.0, ood_err=ood_err, theory_standard=1, theory_composed=1)


def test_claims_read_the_hardest_setting_of_each_swept_axis(tmp_path):
    rows = []
    for seed in range(3):
        rows += [_row("standard", seed, 4, 0.5, 5.0, 1.0), _row("composed", seed, 4, 0.5, 4.0, 0.5),
                 _row("standard", seed, 8, 0.5, 30.0 + seed, 1.0), _row("composed", seed, 8, 0.5, 10.0, 0.2),
                 _row("standard", seed, 4, 0.25, 6.0, 0.3), _row("composed", seed, 4, 0.25, 1.0, 0.4)]
    _write(tmp_path, rows)
    got = summary.claims(summary.load_rows(tmp_path), ratio=3.0)
    assert len(got) == 2
    # k axis (delta = 0.5 is the mode): 31 / 10 = 3.1x holds, OOD 0.2 < 1.0 holds
    assert "max k = 8" in got[0] and "ratio 3.10x" in got[0] and got[0].count("holds") == 2
    # delta axis (k = 4 is the mode): 6 / 1 = 6x holds, but OOD 0.4 > 0.3 fails
    assert "min delta = 0.25" in got[1] and "ratio 6.00x" in got[1] and "composed < standard: fails" in got[1]
    table = summary.table(summary.load_rows(tmp_path))
    assert len(table.splitlines()) == 2 + 6  # header, rule, 3 settings x 2 methods
    assert "| 64 | 8 | 0.5 |" in table and "31 [" in table


def test_bad_results_name_the_file_and_line(tmp_path, capsys):
    assert summary.main([str(tmp_path)]) == 2
    assert "results.csv: not found" in capsys.readouterr().err
    _write(tmp_path, [_row("standard", 0, 4, 0.5, 5.0, 1.0), _row("composed", 0, 4, 0.5, "oops", 0.5)])
    assert summary.main([str(tmp_path)]) == 2
    assert "line 3" in capsys.readouterr().err
