"""Fine-tuning strategies: registry, initialization, trained parameters, losses, predictions."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from _tolerances import TOL
from composedft.compose import freeze, is_frozen
from composedft.io import save_checkpoint
from composedft.objectives import composed_mse, standard_mse
from composedft.strategies import (STRATEGIES, Strategy, finetune, get_strategy, loss_fn_for, make_base_predictor,
                                   predict, register_strategy, trainable_parameters)
from composedft.train import TrainConfig

D = torch.float64


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2)).to(D)


def _xy(n=16, seed=0):
    x = torch.randn(n, 2, dtype=D, generator=torch.Generator().manual_seed(seed))
    return x, torch.stack([x[:, 0] * x[:, 1], torch.sin(x[:, 0])], 1)


def test_registry_has_the_four_strategies():
    assert {"direct", "standard", "composed", "posthoc"} <= set(STRATEGIES)
    assert [get_strategy(n).init for n in ("direct", "standard", "composed", "posthoc")] == \
        ["random", "denoiser", "denoiser", "checkpoint"]
    assert [get_strategy(n).predict_with_denoiser for n in ("direct", "standard", "composed", "posthoc")] == \
        [False, False, True, True]
    assert not get_strategy("posthoc").trains and get_strategy("composed").trains
    with pytest.raises(ValueError, match="unknown strategy 'smartt'.*direct"):
        get_strategy("smartt")
    with pytest.raises(ValueError, match="already registered"):
        register_strategy("direct", get_strategy("standard"))


def test_losses_are_the_objectives():
    f, denoiser = _net(0), freeze(_net(1))
    x, y = _xy()
    batch = (x, y)
    torch.testing.assert_close(loss_fn_for("standard", denoiser)(f, batch), standard_mse(f(x), y), rtol=0, atol=0)
    torch.testing.assert_close(loss_fn_for("direct", None)(f, batch), standard_mse(f(x), y), rtol=0, atol=0)
    torch.testing.assert_close(loss_fn_for("composed", denoiser, lam=0.4)(f, batch),
                               composed_mse(f, denoiser, x, y, lam=0.4), rtol=0, atol=0)
    with pytest.raises(ValueError, match="trains nothing"):
        loss_fn_for("posthoc", denoiser)


def test_init_trainable_parameters_and_predictions(tmp_path):
    denoiser = freeze(_net(1))
    x, _ = _xy()
    f_std = make_base_predictor("standard", factory=lambda: _net(9), denoiser=denoiser)
    assert all(torch.equal(a, b) for a, b in zip(f_std.parameters(), denoiser.parameters()))
    f_dir = make_base_predictor("direct", factory=lambda: _net(9))
    assert all(torch.equal(a, b) for a, b in zip(f_dir.parameters(), _net(9).parameters()))
    save_checkpoint(tmp_path / "std.pt", _net(3).state_dict())
    f_post = make_base_predictor("posthoc", factory=lambda: _net(9), checkpoint=tmp_path / "std.pt")
    f_comp = make_base_predictor("composed", factory=lambda: _net(9), checkpoint=tmp_path / "std.pt",
                                 init="checkpoint")  # the reference code's choice
    assert all(torch.equal(a, b) for a, b in zip(f_post.parameters(), _net(3).parameters()))
    assert all(torch.equal(a, b) for a, b in zip(f_comp.parameters(), _net(3).parameters()))
    assert trainable_parameters("posthoc", f_post) == []
    assert trainable_parameters("composed", f_comp) == list(f_comp.parameters())
    with torch.no_grad():
        assert torch.equal(predict("standard", f_std, denoiser, x), f_std(x))
        assert torch.equal(predict("composed", f_comp, denoiser, x), denoiser(f_comp(x)))
        assert torch.equal(predict("posthoc", f_post, denoiser, x), denoiser(f_post(x)))


def test_finetune_composed_fits_through_the_frozen_denoiser():
    denoiser = _net(1)
    state = {k: v.clone() for k, v in denoiser.state_dict().items()}
    f = make_base_predictor("composed", factory=lambda: _net(9), denoiser=denoiser)
    x, y = _xy(64)
    target = denoiser(_net(5)(x)).detach()  # realizable: some f exists with Π(f(x)) = target
    loss = loss_fn_for("composed", denoiser)
    with torch.no_grad():
        before = float(loss(f, (x, target)))
    cfg = TrainConfig(lr=2e-2, steps=150, device="cpu", progress=False)
    res = finetune("composed", f, denoiser, lambda step, g: (x, target), cfg)
    with torch.no_grad():
        after = float(loss(f, (x, target)))
    assert res.step == 150 and after < 0.2 * before
    assert is_frozen(denoiser)
    assert all(torch.equal(state[k], v) for k, v in denoiser.state_dict().items())
    assert finetune("posthoc", f, denoiser, lambda step, g: (x, target), cfg) is None


def test_new_strategies_plug_in():
    def l2sp(f, denoiser, x, y, lam):  # e.g. a regularized fine-tuning method
        dist = sum(((p - q) ** 2).sum() for p, q in zip(f.parameters(), denoiser.parameters()))
        return standard_mse(f(x), y) + lam * dist

    try:
        s = register_strategy("l2sp", Strategy("ignored", "denoiser", l2sp, False, "L2 towards the denoiser"))
        assert s.name == "l2sp" and get_strategy("l2sp") is s
        denoiser = freeze(_net(1))
        f = make_base_predictor("l2sp", factory=lambda: _net(2), denoiser=denoiser)
        x, y = _xy()
        val = loss_fn_for("l2sp", denoiser, lam=0.5)(f, (x, y))
        torch.testing.assert_close(val, standard_mse(f(x), y), **TOL["same_float64"])  # f == Π at init
    finally:
        STRATEGIES.pop("l2sp", None)
