"""The method registry: lookup, phases, initialization, trained parameters, losses, predictions."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from _tolerances import TOL
from composedft.compose import freeze, is_frozen
from composedft.io import save_checkpoint
from composedft.objectives import composed_mse, standard_mse
from composedft.methods import (METHODS, OBJECTIVES, Method, finetune, get_method, loss_fn_for, make_base_predictor,
                                predict, register_method, register_objective, resolve_init, trainable_parameters,
                                training_phases, with_dependencies)
from composedft.train import TrainConfig

D = torch.float64


def _net(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2)).to(D)


def _xy(n=16, seed=0):
    x = torch.randn(n, 2, dtype=D, generator=torch.Generator().manual_seed(seed))
    return x, torch.stack([x[:, 0] * x[:, 1], torch.sin(x[:, 0])], 1)


def test_registry_order_puts_registered_methods_first_in_registration_order():
    from composedft.methods import registry_order
    assert list(METHODS).index("direct") < list(METHODS).index("standard") < list(METHODS).index("bt")
    got = registry_order(["zeta", "bt", "standard", "alpha", "direct", "bt"])
    assert got == ["direct", "standard", "bt", "zeta", "alpha"]  # repeats dropped, unknown names keep their order
    assert registry_order([]) == []


def test_registry_has_the_built_in_methods():
    names = ("direct", "standard", "composed", "posthoc", "standard+posthoc", "direct+posthoc", "composed-base")
    assert set(names) <= set(METHODS)
    assert [resolve_init(n) for n in names[:3]] == ["random", "denoiser", "denoiser"]
    assert [get_method(n).reuse for n in names[3:]] == ["standard", "standard", "direct", "composed"]
    assert [get_method(n).predict_with_denoiser for n in names] == [False, False, True, True, True, True, False]
    assert [get_method(n).trains for n in names] == [True, True, True, False, False, False, False]
    with pytest.raises(ValueError, match="unknown method 'smartt'.*direct"):
        get_method("smartt")
    with pytest.raises(ValueError, match="already registered"):
        register_method(get_method("standard"))
    with pytest.raises(ValueError, match="exactly one of"):
        Method("both", "random", "standard", False, reuse="direct")


def test_init_field_overrides_and_phases_follow_inits():
    ref = SimpleNamespace(composed_init="standard")  # the reference code's choice
    assert resolve_init("composed", ref) == "standard" and resolve_init("composed", object()) == "denoiser"
    assert resolve_init("direct", ref) == "random"  # no init_field: the config cannot move it
    names = ["direct", "standard", "composed", "posthoc", "composed-base"]
    assert training_phases(names) == [["direct", "standard", "composed"]]
    assert training_phases(names, ref) == [["direct", "standard"], ["composed"]]
    with pytest.raises(ValueError, match="reuses 'standard'"):
        training_phases(["posthoc"])
    assert with_dependencies(["composed-base"]) == ["composed-base", "composed"]
    assert with_dependencies(["composed-base"], ref) == ["composed-base", "composed", "standard"]
    assert with_dependencies(["direct+posthoc", "direct"]) == ["direct+posthoc", "direct"]
    with pytest.raises(ValueError, match="starts from 'standard'"):
        training_phases(["composed"], ref)
    try:
        register_method(Method("a", "b", "standard", False))
        register_method(Method("b", "a", "standard", False))
        with pytest.raises(ValueError, match="cycle"):
            training_phases(["a", "b"])
    finally:
        METHODS.pop("a", None), METHODS.pop("b", None)


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
    with torch.no_grad():
        assert torch.equal(predict("composed-base", f, denoiser, x), f(x))


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
                                 cfg=SimpleNamespace(composed_init="standard"))  # the reference code's choice
    with pytest.raises(ValueError, match="pass checkpoint="):
        make_base_predictor("composed-base", factory=lambda: _net(9))
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


def test_new_methods_plug_in():
    def l2sp(f, denoiser, x, y, lam):  # e.g. a regularized fine-tuning method
        dist = sum(((p - q) ** 2).sum() for p, q in zip(f.parameters(), denoiser.parameters()))
        return standard_mse(f(x), y) + lam * dist

    try:
        register_objective("l2sp", l2sp)
        m = register_method(Method("l2sp", "denoiser", "l2sp", False, description="L2 towards the denoiser"))
        assert get_method("l2sp") is m
        denoiser = freeze(_net(1))
        f = make_base_predictor("l2sp", factory=lambda: _net(2), denoiser=denoiser)
        x, y = _xy()
        val = loss_fn_for("l2sp", denoiser, lam=0.5)(f, (x, y))
        torch.testing.assert_close(val, standard_mse(f(x), y), **TOL["same_float64"])  # f == Π at init
        with torch.no_grad():
            f[0].weight.add_(0.1)
        dist = sum(((p - q) ** 2).sum() for p, q in zip(f.parameters(), denoiser.parameters()))
        torch.testing.assert_close(loss_fn_for("l2sp", denoiser, lam=0.5)(f, (x, y)),
                                   standard_mse(f(x), y) + 0.5 * dist, **TOL["same_float64"])
    finally:
        METHODS.pop("l2sp", None), OBJECTIVES.pop("l2sp", None)
