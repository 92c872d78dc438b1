"""The ReLU figures render from a tiny saved results folder (no training)."""
import json

import numpy as np
import pandas as pd

from figures.__main__ import main as figures_main
from figures import relu as relu_figs

METHODS = ["direct", "standard", "composed", "posthoc"]


def _fake_run(path):
    base = {"n_train": 32, "k": 6, "delta": 0.5, "sigma": 0.2, "lam": 0.0, "width": 8, "weight_decay": 2e-3}
    axes = {"n_train": [8, 32], "k": [5, 6], "delta": [0.25, 0.5], "sigma": [0.1, 0.2], "lam": [0.0, 1.0],
            "weight_decay": [5e-4, 2e-3]}
    rng = np.random.default_rng(0)
    rows = []
    for axis, vals in axes.items():
        for v in vals:
            for seed in range(3):
                for m in METHODS:
                    s = dict(base, **{axis: v})
                    rows.append(dict(s, method=m, seed=seed, k_train=s["k"] - 2, weight_norm=rng.uniform(1, 9),
                                     path_norm=rng.uniform(1, 9), fn_norm=rng.uniform(1, 9), id_mse=rng.uniform(),
                                     id_err=rng.uniform(), ood_mse=rng.uniform(), ood_err=rng.uniform()))
    pd.DataFrame(rows).drop_duplicates(["method", "seed", *base]).to_csv(path / "results.csv", index=False)
    traj = [dict(base, method=m, seed=seed, step=step, fn_norm=50.0 / (1 + step), objective=1.0 / (1 + step))
            for m in METHODS if m != "posthoc" for seed in range(3) for step in (0, 10, 20)]
    pd.DataFrame(traj).to_csv(path / "trajectories.csv", index=False)
    (path / "config.json").write_text(json.dumps(base | {"k_ood": 2, "h": 1.0, "interval_len": 1.0}))
    x = np.linspace(-0.5, 9, 50)
    np.savez(path / "curves.npz", x=x, target=np.floor(x / 1.5), linear=x / 1.5, x_train=x[:10], y_train=np.floor(x[:10] / 1.5),
             standard_f=x * 0.5, composed_f=x / 1.5, composed_pi_f=np.round(x / 1.5), k=6, k_train=4,
             delta=0.5, L=1.0, h=1.0, seed=0)


def test_figures_render_from_saved_results(tmp_path):
    _fake_run(tmp_path)
    assert figures_main(["relu", str(tmp_path)]) == 0
    for name in ("fig1_staircase.png", "norms.png", "errors_vs_n.png", "ablations.png", "training.png"):
        png = tmp_path / "figures" / name
        assert png.exists() and 1_000 < png.stat().st_size < 200_000


def test_plot_functions_take_a_dataframe_and_return_fig_ax(tmp_path):
    _fake_run(tmp_path)
    df = relu_figs.load(tmp_path)
    base = relu_figs.base_values(df, tmp_path)
    fig, axes = relu_figs.plot_norms(df, base)
    assert len(axes) == 2 and axes[0].get_yscale() == "log"
    # the theory curve is drawn from theory.staircase (2 h (k_train - 1) / delta on the delta panel)
    theory_line = [ln for ln in axes[0].get_lines() if ln.get_label() == "theory: standard min R"][0]
    xd, yd = theory_line.get_data()
    assert np.allclose(yd, 2 * 1.0 * 3 / np.asarray(xd))
    # one ablation row per swept axis: lambda, sigma and the weight-decay path, log x for the latter
    fig, axes = relu_figs.plot_ablations(df, base)
    assert axes.shape == (3, 2) and axes[2, 0].get_xscale() == "log"
    assert sorted(set(axes[2, 1].get_lines()[0].get_xdata())) == [5e-4, 2e-3]
    # the training panel draws each method's mean R(f) per recorded step
    fig, axes = relu_figs.plot_training(pd.read_csv(tmp_path / "trajectories.csv"), base)
    line = axes[0].get_lines()[0]
    assert list(line.get_xdata()) == [0, 10, 20] and np.allclose(line.get_ydata(), [50.0, 50 / 11, 50 / 21])


def test_dispatcher_rejects_unknown_subcommand(capsys):
    assert figures_main(["nope"]) == 2
    assert "unknown subcommand" in capsys.readouterr().err
