"""The related methods in the batched ReLU study (docs/related-methods.md §3-§5).

Independent computations: the closed-form Taylor model and Jacobian against torch.func
(composedft.entk); the Taylor model's split into a ReLU net plus steps reconstructs it exactly;
the grouped hook inside the batched trainer gives identical updates within a group and, with
one group per unit, exactly standard fine-tuning; SMART with zero weights is standard; a RadReg
denoiser has a smaller Rademacher estimate on the downstream inputs; and a tiny sweep carries
every method, the denoiser_reg rows and zero gap / kernel distance for the linearized method.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from _tolerances import TOL
from composedft.config import ConfigError
from composedft.entk import jacobian, linearize
from composedft.io import read_csv
from composedft.radreg import rademacher_linear_exact
from figures import related as figures_related
from simulations.relu import models, related, train
from simulations.relu.__main__ import main
from simulations.relu.config import ReluConfig, Setting, validate

D = torch.float64


def _net(seed: int, S: int = 2, m: int = 5) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"a": torch.randn(S, m, dtype=D, generator=g), "w": torch.randn(S, m, dtype=D, generator=g),
            "b": torch.randn(S, m, dtype=D, generator=g), "c": torch.randn(S, dtype=D, generator=g)}


X = torch.linspace(-2.0, 2.0, 37, dtype=D).repeat(2, 1)


def test_taylor_model_and_jacobian_match_torch_func():
    p0, p1 = _net(0), _net(1)
    for s in range(2):
        one = lambda p: {k: v[s:s + 1] for k, v in p.items()}  # noqa: E731
        fn = lambda q, x: models.forward(q, x.unsqueeze(0))[0]  # noqa: E731
        ref = linearize(fn, one(p0))(one(p1), X[s])
        torch.testing.assert_close(related.taylor_forward(p1, p0, X)[s], ref, **TOL["same_float64"])
        jac = jacobian(fn, one(p0), X[s])  # sorted keys: a, b, c, w
        m = 5
        mine = related.jacobian_rows(p0, X)[s]
        reordered = torch.cat([mine[:, :m], mine[:, 2 * m:3 * m], mine[:, 3 * m:], mine[:, m:2 * m]], 1)
        torch.testing.assert_close(reordered, jac, **TOL["same_float64"])


def test_taylor_split_reconstructs_the_taylor_model_with_steps():
    p0, p1 = _net(2), _net(3)
    net, jump = related.taylor_split(p1, p0)
    pre0 = X.unsqueeze(-1) * p0["w"].unsqueeze(1) + p0["b"].unsqueeze(1)
    steps_height = p0["a"] * (p1["w"] * (-p0["b"] / p0["w"]) + p1["b"])
    steps = ((pre0 > 0).to(D) * steps_height.unsqueeze(1)).sum(-1)
    torch.testing.assert_close(models.forward(net, X) + steps, related.taylor_forward(p1, p0, X), **TOL["same_float64"])
    torch.testing.assert_close(jump, steps_height.abs().sum(1), **TOL["same_float64"])
    _, zero = related.taylor_split(p0, p0)  # at θ0 the Taylor model is f itself: continuous
    assert torch.all(zero.abs() < 1e-12)
    bad = dict(p0, w=p0["w"].clone())
    bad["w"][0, 0] = 0.0
    with pytest.raises(ValueError, match="no knot"):
        related.taylor_split(p1, bad)


def _batch(hooks=(), step_hooks=(), regs=()):
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 9, dtype=D, generator=g) * 3
    y = torch.round(x)
    return train.Batch(x, y, torch.ones_like(x), torch.ones(2, dtype=D), torch.zeros(2, dtype=D), None,
                       regs, hooks, step_hooks)


def test_grouped_hook_in_the_batched_trainer():
    p0 = _net(4)
    cfg = ReluConfig(n_groups=2)
    b = _batch()
    h = related.hooks_for("grouped", cfg, torch.arange(2), p0, b.x, b.y, b.mask, [0, 1])
    p, _, _ = train.train_stack(p0, _batch([h.grad_hook]), steps=4, lr=1e-2, weight_decay=1e-3)
    labels = related._group_labels(cfg, p0, b.x, b.mask, [0, 1])
    assert labels.max() == 1  # two groups per row
    for k in ("a", "w", "b"):
        upd = p[k] - p0[k]
        for s in range(2):
            for grp in range(2):
                u = upd[s][labels[s] == grp]
                torch.testing.assert_close(u, u[:1].expand_as(u), rtol=0, atol=1e-15)
    full = related.hooks_for("grouped", ReluConfig(n_groups=5), torch.arange(2), p0, b.x, b.y, b.mask, [0, 1])
    pg, _, _ = train.train_stack(p0, _batch([full.grad_hook]), steps=4, lr=1e-2, weight_decay=1e-3)
    ps, _, _ = train.train_stack(p0, _batch(), steps=4, lr=1e-2, weight_decay=1e-3)
    assert all(torch.equal(pg[k], ps[k]) for k in ps)  # one unit per group: standard fine-tuning


def test_smart_with_zero_weights_is_standard_and_its_anchor_follows_the_ema():
    p0 = _net(6)
    b = _batch()
    cfg = ReluConfig(smart_lambda=0.0, smart_mu=0.0)
    h = related.hooks_for("smart", cfg, torch.arange(2), p0, b.x, b.y, b.mask, [0, 1])
    pz, _, _ = train.train_stack(p0, _batch(step_hooks=[h.step_hook], regs=[(torch.arange(2), h.regularizer)]),
                                 steps=3, lr=1e-2, weight_decay=1e-3)
    ps, _, _ = train.train_stack(p0, _batch(), steps=3, lr=1e-2, weight_decay=1e-3)
    assert all(torch.equal(pz[k], ps[k]) for k in ps)
    h = related.hooks_for("smart", ReluConfig(), torch.arange(2), p0, b.x, b.y, b.mask, [0, 1])
    assert torch.all(h.regularizer(p0, b.x, b.mask) >= 0)


def test_radreg_denoiser_has_smaller_rademacher_estimate_on_downstream_inputs():
    noisy = torch.as_tensor(np.random.default_rng(0).normal(size=(1, 256)))
    clean = torch.round(noisy)
    inputs = torch.linspace(0.0, 3.0, 12, dtype=D).unsqueeze(0)
    start = train.knot_grid_fit(noisy, clean, [8], 8, np.array([-1.5]), np.array([1.5]))
    kw = dict(steps=60, batch=64, lr=1e-2, seed=0)
    plain = train.train_denoisers(start, noisy, clean, **kw)
    reg = train.train_denoisers(start, noisy, clean, radreg=(inputs, 1.0, 8), **kw)
    rad = lambda p: rademacher_linear_exact(torch.relu(inputs[0].unsqueeze(-1) * p["w"][0] + p["b"][0]))  # noqa: E731
    assert rad(reg) < 0.9 * rad(plain)
    zero = train.train_denoisers(start, noisy, clean, radreg=(inputs, 0.0, 8), **kw)
    assert all(torch.equal(zero[k], plain[k]) for k in plain)  # weight 0: the same batches, the same denoiser


TINY = ["--preset", "smoke", "--steps=15", "--denoiser_steps=3", "--seeds=2", "--n_test=16", "--n_train=12",
        "--width=6", "--n_groups=3", "--sweep_k=4", "--curve_points=20", "--delta=0.5", "--record_every=0"]


def test_tiny_sweep_has_every_method_and_the_denoiser_reg_rows(tmp_path, capsys):
    methods = "standard,composed,smart,linearized,grouped"
    assert main([*TINY, f"--methods={methods}", "--sweep_denoiser_reg=none,radreg", "--out", str(tmp_path / "a")]) == 0
    rows = read_csv(tmp_path / "a" / "results.csv")
    assert {r["method"] for r in rows} == set(methods.split(","))
    assert {r["denoiser_reg"] for r in rows} == {"none", "radreg"}
    assert len([r for r in rows if r["denoiser_reg"] == "radreg"]) == 2 * 5  # base setting x seeds x methods
    lin = [r for r in rows if r["method"] == "linearized"]
    assert all(abs(float(r["lin_gap"])) < 1e-9 and abs(float(r["kernel_dist"])) < 1e-12 for r in lin)
    others = [r for r in rows if r["method"] != "linearized"]
    assert all(float(r["lin_jump"]) == 0.0 and float(r["kernel_dist"]) >= -1e-12 for r in others)
    # the plain rows do not depend on the denoiser_reg axis being there
    assert main([*TINY, f"--methods={methods}", "--out", str(tmp_path / "b")]) == 0
    plain = [r for r in rows if r["denoiser_reg"] == "none"]
    assert plain == read_csv(tmp_path / "b" / "results.csv")
    # the figure and table read both folders (the shared rows agree) ...
    assert figures_related.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    assert (tmp_path / "a" / "figures" / "related.png").exists()
    table = capsys.readouterr().out
    assert all(f"| {m} |" in table for m in methods.split(",")) and "| radreg |" in table
    # ... and refuse two folders that disagree on the same row
    bad = (tmp_path / "b" / "results.csv").read_text().replace(plain[0]["fn_norm"], "123.0", 1)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "results.csv").write_text(bad)
    assert figures_related.main([str(tmp_path / "a"), str(tmp_path / "c")]) == 2


def test_default_pre_training_leaves_the_setting_key_and_so_the_seeds_unchanged():
    base = Setting.base(ReluConfig())
    assert base.key() == (64, 8, "0.25", "0.2", "0.1", 32, "0.002")  # the key (and init seeds) before the axis
    assert dataclasses.replace(base, denoiser_reg="radreg").key() == base.key() + ("radreg",)


def test_bad_related_fields_are_refused():
    with pytest.raises(ConfigError, match="sweep_denoiser_reg"):
        validate(ReluConfig(sweep_denoiser_reg=("l2",)))
    with pytest.raises(ConfigError, match="methods"):
        validate(ReluConfig(methods=("standard", "smarter")))
    with pytest.raises(ConfigError, match="n_groups"):
        validate(dataclasses.replace(ReluConfig(), n_groups=0))
