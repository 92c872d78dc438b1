"""Composed(base_predictor, denoiser), freeze and base-predictor initialization."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from composedft.compose import Composed, freeze, init_base_predictor, is_frozen, unfreeze
from composedft.io import CheckpointError, save_checkpoint
from composedft.objectives import composed_mse
from composedft.train import TrainConfig, train
from torch.optim.optimizer import register_optimizer_step_pre_hook


def _denoiser(seed=0, width=8, dim=3, dtype=torch.float64):
    """A denoiser whose train/eval behaviour differs (dropout, BatchNorm statistics)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, width), nn.BatchNorm1d(width), nn.Tanh(), nn.Dropout(0.5),
                         nn.Linear(width, dim)).to(dtype)


def _mlp(seed=1, dim=3, width=8, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(dim, width), nn.Tanh(), nn.Linear(width, dim)).to(dtype)


def _warm_denoiser():
    """BatchNorm running statistics that are not the defaults (as after pre-training)."""
    d = _denoiser()
    d.train()
    with torch.no_grad():
        d(torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5)) * 2 + 1)
    return d


def test_denoiser_frozen_and_stays_eval_after_train():
    d = _warm_denoiser()
    model = Composed(_mlp(), d)
    model.train()
    assert model.training and model.base_predictor.training
    assert not model.denoiser.training
    assert all(not m.training for m in model.denoiser.modules())
    assert all(not p.requires_grad for p in model.denoiser.parameters())
    assert all(p.requires_grad for p in model.base_predictor.parameters())
    # freeze() also protects a denoiser used on its own
    d.train()
    assert is_frozen(d)
    # in train mode the output is deterministic (no dropout) and equals the eval-mode Π∘f
    x = torch.randn(5, 3, dtype=torch.float64)
    a, b = model(x), model(x)
    assert torch.equal(a, b)
    with torch.no_grad():
        ref = d(model.base_predictor(x))
    assert torch.equal(a.detach(), ref)


def test_only_base_predictor_gets_gradients():
    model = Composed(_mlp(), _warm_denoiser())
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    composed_mse(model.base_predictor, model.denoiser, x, y, lam=0.5).backward()
    assert all(p.grad is None for p in model.denoiser.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.base_predictor.parameters())
    assert model.trainable_parameters() == list(model.base_predictor.parameters())


def test_composed_training_leaves_denoiser_bitwise_unchanged():
    d = _warm_denoiser()
    model = Composed(_mlp(), d)
    before = {k: v.clone() for k, v in model.denoiser.state_dict().items()}  # incl. BatchNorm buffers
    f_before = [p.detach().clone() for p in model.base_predictor.parameters()]
    seen_in_optimizer: list[set[int]] = []

    def hook(opt, args, kwargs):  # what the optimizer actually steps
        seen_in_optimizer.append({id(p) for g in opt.param_groups for p in g["params"]})

    handle = register_optimizer_step_pre_hook(hook)
    try:
        w = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

        def batch_fn(step, g):
            x = torch.randn(16, 3, dtype=torch.float64, generator=g)
            return x, torch.sin(x @ w)

        cfg = TrainConfig(lr=1e-2, steps=20, weight_decay=0.1, grad_clip=1.0, device="cpu", progress=False)
        train(model, lambda m, b: composed_mse(m.base_predictor, m.denoiser, *b, lam=1.0), batch_fn, cfg)
    finally:
        handle.remove()
    after = model.denoiser.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert any(not torch.equal(a, p) for a, p in zip(f_before, model.base_predictor.parameters()))
    f_ids = {id(p) for p in model.base_predictor.parameters()}
    assert len(seen_in_optimizer) == 20 and all(s == f_ids for s in seen_in_optimizer)


def test_state_dict_round_trip(tmp_path):
    model = Composed(_mlp(seed=1), _warm_denoiser())
    save_checkpoint(tmp_path / "m.pt", model.state_dict())
    other = Composed(_mlp(seed=7), _denoiser(seed=8))
    from composedft.io import load_checkpoint
    other.load_state_dict(load_checkpoint(tmp_path / "m.pt"))
    for (k1, v1), (k2, v2) in zip(model.state_dict().items(), other.state_dict().items()):
        assert k1 == k2 and torch.equal(v1, v2)
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(model(x), other(x))
    assert any(k.startswith("denoiser.") for k in model.state_dict())
    assert not other.denoiser.training and all(not p.requires_grad for p in other.denoiser.parameters())


def test_composed_refuses_shared_modules():
    d = _denoiser()
    with pytest.raises(ValueError, match="same module"):
        Composed(d, d)
    f = _mlp()
    shared = nn.Sequential(f[0], nn.Tanh())
    with pytest.raises(ValueError, match="share"):
        Composed(f, shared)


@pytest.mark.parametrize("use_factory", [False, True])
def test_init_from_denoiser_is_an_independent_trainable_copy(use_factory):
    d = freeze(_warm_denoiser())
    f = init_base_predictor("denoiser", denoiser=d, factory=(lambda: _denoiser(seed=99, dtype=torch.float32))
                            if use_factory else None)
    sd, sf = d.state_dict(), f.state_dict()
    assert sd.keys() == sf.keys()
    for k in sd:
        assert torch.equal(sd[k], sf[k]) and sf[k].dtype == sd[k].dtype  # exact copy, dtype kept
        assert sd[k].data_ptr() != sf[k].data_ptr()
    assert f.training and all(p.requires_grad for p in f.parameters())
    f.eval(); f.train()
    assert f.training  # the copy does not inherit the frozen train()
    with torch.no_grad():
        next(f.parameters()).add_(1.0)
    assert not torch.equal(next(f.parameters()), next(d.parameters()))
    assert is_frozen(d)


def test_init_from_checkpoint(tmp_path):
    src = _mlp(seed=3)
    save_checkpoint(tmp_path / "plain.pt", src.state_dict())
    f = init_base_predictor("checkpoint", factory=lambda: _mlp(seed=4), checkpoint=tmp_path / "plain.pt")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), f.state_dict().values()))
    # f out of a saved Composed (the layout train() writes: {"model": state_dict, ...})
    comp = Composed(_mlp(seed=5), _denoiser())
    save_checkpoint(tmp_path / "run.pt", {"model": comp.state_dict(), "step": 3})
    g = init_base_predictor("checkpoint", factory=lambda: _mlp(seed=6), checkpoint=tmp_path / "run.pt",
                            key="model.base_predictor")
    assert all(torch.equal(a, b) for a, b in zip(comp.base_predictor.state_dict().values(), g.state_dict().values()))
    with pytest.raises(CheckpointError, match="no entry 'nope'"):
        init_base_predictor("checkpoint", factory=_mlp, checkpoint=tmp_path / "run.pt", key="nope")


def test_init_from_checkpoint_errors_name_file_and_parameter(tmp_path):
    save_checkpoint(tmp_path / "wide.pt", _mlp(width=9).state_dict())
    with pytest.raises(CheckpointError, match=r"wide\.pt.*'0\.weight'.*\(9, 3\).*\(8, 3\)"):
        init_base_predictor("checkpoint", factory=_mlp, checkpoint=tmp_path / "wide.pt")
    save_checkpoint(tmp_path / "other.pt", _denoiser().state_dict())
    with pytest.raises(CheckpointError, match=r"other\.pt.*(missing|unexpected) parameter"):
        init_base_predictor("checkpoint", factory=_mlp, checkpoint=tmp_path / "other.pt")
    good = tmp_path / "good.pt"
    save_checkpoint(good, _mlp().state_dict())
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match=r"cut\.pt.*truncated or corrupt"):
        init_base_predictor("checkpoint", factory=_mlp, checkpoint=tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        init_base_predictor("checkpoint", factory=_mlp, checkpoint=tmp_path / "missing.pt")


def test_init_random_and_bad_arguments():
    f = init_base_predictor("random", factory=lambda: _mlp(seed=11))
    assert all(torch.equal(a, b) for a, b in zip(f.parameters(), _mlp(seed=11).parameters()))
    assert f.training and all(p.requires_grad for p in f.parameters())
    with pytest.raises(ValueError, match="unknown init mode 'pretrained'"):
        init_base_predictor("pretrained", factory=_mlp)
    with pytest.raises(ValueError, match="needs denoiser="):
        init_base_predictor("denoiser", factory=_mlp)
    with pytest.raises(ValueError, match="needs factory="):
        init_base_predictor("random")


def test_unfreeze_restores_training():
    d = freeze(_denoiser())
    unfreeze(d)
    assert d.training and all(p.requires_grad for p in d.parameters())
    d.eval(); d.train()
    assert d.training


def test_frozen_denoiser_pickles_and_deep_copies_frozen(tmp_path):
    import copy
    d = freeze(_warm_denoiser())
    torch.save(d, tmp_path / "whole.pt")  # the whole module, e.g. for multiprocessing
    d2 = torch.load(tmp_path / "whole.pt", weights_only=False)
    d3 = copy.deepcopy(d)
    for m in (d2, d3):
        m.train()
        assert is_frozen(m)
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), d.state_dict().values()))
    unfreeze(d3)
    assert is_frozen(d) and not is_frozen(d3)  # the copy's train() is its own


@pytest.mark.gpu
def test_composed_training_on_cuda_keeps_denoiser_and_resumes_exactly(tmp_path):
    from composedft.seeding import seed_everything
    seed_everything(0, deterministic=True)
    try:
        _cuda_run(tmp_path)
    finally:
        torch.use_deterministic_algorithms(False)


def _cuda_run(tmp_path):
    w = torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))

    def batch_fn(step, g):
        x = torch.randn(16, 3, dtype=torch.float64, generator=g)
        return x, torch.sin(x @ w)

    def loss(m, b):
        return composed_mse(m.base_predictor, m.denoiser, *b, lam=1.0)

    class Kill(Exception):
        pass

    def dying(step, g):
        if step == 7:
            raise Kill
        return batch_fn(step, g)

    cfg = TrainConfig(lr=1e-2, steps=10, ckpt_every=5, device="cuda", progress=False)
    ref = Composed(_mlp(), _warm_denoiser())
    before = {k: v.clone() for k, v in ref.denoiser.state_dict().items()}
    train(ref, loss, batch_fn, cfg, run_dir=tmp_path / "ref")
    assert all(torch.equal(before[k], v.cpu()) for k, v in ref.denoiser.state_dict().items())
    run = Composed(_mlp(), _warm_denoiser())
    with pytest.raises(Kill):
        train(run, loss, dying, cfg, run_dir=tmp_path / "run")
    run = Composed(_mlp(seed=9), _warm_denoiser())
    train(run, loss, batch_fn, cfg, run_dir=tmp_path / "run")
    assert all(torch.equal(a, b) for a, b in zip(ref.parameters(), run.parameters()))
