"""The training loop: schedules, clipping, determinism, model selection, checkpoints and resume."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.nn as nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from composedft.config import ConfigError, apply_overrides, parse_config
from composedft.io import CheckpointError, load_checkpoint
from composedft.train import BEST_CKPT, LAST_CKPT, TrainConfig, lr_factor, train

D = torch.float64
W_TRUE = torch.tensor([[1.0, -2.0], [0.5, 0.3], [-1.0, 0.8]], dtype=D)


def _model(seed=0):
    torch.manual_seed(seed)
    # dropout makes the loss depend on the global torch RNG: resume must restore it
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Dropout(0.2), nn.Linear(8, 2)).to(D)


def batch_fn(step, g):
    x = torch.randn(8, 3, dtype=D, generator=g)
    return x, torch.tanh(x @ W_TRUE)


def loss_fn(model, batch):
    x, y = batch
    noise = 1e-3 * torch.randn(1, dtype=D)  # global-RNG randomness inside the loss
    return ((model(x) - y) ** 2).mean() + noise.sum() * 0, {"noise": float(noise)}


X_VAL = torch.randn(64, 3, dtype=D, generator=torch.Generator().manual_seed(99))
Y_VAL = torch.tanh(X_VAL @ W_TRUE)


@torch.no_grad()
def eval_fn(model):
    return {"val_mse": float(((model(X_VAL) - Y_VAL) ** 2).mean()), "neg": -1.0}


def _cfg(**kw):
    base = dict(lr=3e-2, steps=12, weight_decay=0.01, grad_clip=5.0, schedule="cosine", warmup=2,
                eval_every=3, ckpt_every=4, seed=5, device="cpu", select_metric="val_mse", progress=False)
    base.update(kw)
    return TrainConfig(**base)


def _params(model):
    return [p.detach().clone() for p in model.parameters()]


def test_lr_factor_closed_forms():
    c = TrainConfig(steps=10, warmup=2, schedule="cosine", min_lr_ratio=0.1)
    assert [lr_factor(c, s) for s in (0, 1)] == [pytest.approx(1 / 3), pytest.approx(2 / 3)]
    assert lr_factor(c, 2) == pytest.approx(1.0)
    assert lr_factor(c, 6) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert lr_factor(c, 10) == pytest.approx(0.1)
    lin = TrainConfig(steps=10, warmup=0, schedule="linear")
    assert lr_factor(lin, 5) == pytest.approx(0.5) and lr_factor(lin, 10) == pytest.approx(0.0)
    inv = TrainConfig(steps=100, warmup=4, schedule="inverse_sqrt")
    assert lr_factor(inv, 4) == pytest.approx(1.0) and lr_factor(inv, 16) == pytest.approx(0.5)
    assert lr_factor(TrainConfig(schedule="constant"), 500) == 1.0


def test_loop_uses_the_schedule():
    model = _model()
    cfg = _cfg(eval_every=1, ckpt_every=0, select_metric="")
    res = train(model, loss_fn, batch_fn, cfg, eval_fn=eval_fn)
    # history[i] is recorded after i+1 updates; its lr is the one of the next update
    for h in res.history:
        assert h["lr"] == pytest.approx(cfg.lr * lr_factor(cfg, int(h["step"])), rel=1e-12)
    assert [h["step"] for h in res.history] == list(range(1, 13))


def test_gradient_clipping_bounds_the_stepped_gradient():
    norms = []

    def hook(opt, args, kwargs):
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for g in opt.param_groups
                                                                  for p in g["params"]]))))

    handle = register_optimizer_step_pre_hook(hook)
    try:
        train(_model(), lambda m, b: 100 * loss_fn(m, b)[0], batch_fn, _cfg(grad_clip=0.5, ckpt_every=0))
        clipped = list(norms)
        norms.clear()
        train(_model(), lambda m, b: 100 * loss_fn(m, b)[0], batch_fn, _cfg(grad_clip=0.0, ckpt_every=0))
    finally:
        handle.remove()
    assert len(clipped) == 12 and max(clipped) <= 0.5 * (1 + 1e-9)
    assert min(norms) > 0.5  # without clipping these gradients are larger: the bound was active


def test_same_seed_same_result_other_seed_differs():
    a, b, c = _model(), _model(), _model()
    ra = train(a, loss_fn, batch_fn, _cfg())
    rb = train(b, loss_fn, batch_fn, _cfg())
    train(c, loss_fn, batch_fn, _cfg(seed=6))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert ra.history == rb.history
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


class _Kill(Exception):
    pass


@pytest.mark.parametrize("restore_best", [False, True])
def test_killed_and_resumed_run_matches_uninterrupted(tmp_path, restore_best):
    cfg = _cfg(restore_best=restore_best)
    ref_model = _model()
    ref = train(ref_model, loss_fn, batch_fn, cfg, eval_fn=eval_fn, run_dir=tmp_path / "ref")

    def dying_batch_fn(step, g):
        if step == 9:  # killed after the checkpoint at step 8, mid-way to the next
            raise _Kill
        return batch_fn(step, g)

    model = _model()
    with pytest.raises(_Kill):
        train(model, loss_fn, dying_batch_fn, cfg, eval_fn=eval_fn, run_dir=tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / LAST_CKPT)["step"] == 8
    fresh = _model(seed=123)  # a new process: the model starts from anything, the checkpoint decides
    torch.manual_seed(777)  # and the global RNG is wherever it is
    res = train(fresh, loss_fn, batch_fn, cfg, eval_fn=eval_fn, run_dir=tmp_path / "run")
    assert res.resumed_from == 8 and res.step == 12
    assert all(torch.equal(p, q) for p, q in zip(ref_model.parameters(), fresh.parameters()))
    assert res.history == ref.history and res.best_step == ref.best_step and res.best_metric == ref.best_metric
    last_ref, last = load_checkpoint(tmp_path / "ref" / LAST_CKPT), load_checkpoint(tmp_path / "run" / LAST_CKPT)
    assert all(torch.equal(last_ref["model"][k], last["model"][k]) for k in last_ref["model"])
    # calling again on a finished run trains nothing and changes nothing
    again = train(fresh, loss_fn, batch_fn, cfg, eval_fn=eval_fn, run_dir=tmp_path / "run")
    assert again.resumed_from == 12 and again.history == ref.history
    assert all(torch.equal(p, q) for p, q in zip(ref_model.parameters(), fresh.parameters()))


def test_model_selection_keeps_and_saves_the_best_state(tmp_path):
    model = _model()
    res = train(model, loss_fn, batch_fn, _cfg(steps=30, eval_every=2, lr=0.1), eval_fn=eval_fn, run_dir=tmp_path)
    vals = [h["val_mse"] for h in res.history]
    assert res.best_metric == min(vals) and res.best_step == res.history[vals.index(min(vals))]["step"]
    assert eval_fn(model.eval())["val_mse"] == res.best_metric  # restore_best: the model is the best
    best = load_checkpoint(tmp_path / BEST_CKPT)
    assert best["step"] == res.best_step and best["value"] == res.best_metric
    m2 = _model(seed=50)
    m2.load_state_dict(best["model"])
    assert eval_fn(m2.eval())["val_mse"] == res.best_metric
    rows = (tmp_path / "eval.csv").read_text().splitlines()
    assert rows[0].startswith("step,lr,train_loss,val_mse") and len(rows) == 1 + 15
    res_max = train(_model(), loss_fn, batch_fn, _cfg(steps=6, eval_every=2, select_metric="val_mse",
                                                       select_mode="max"), eval_fn=eval_fn)
    assert res_max.best_metric == max(h["val_mse"] for h in res_max.history)
    with pytest.raises(KeyError, match="select_metric 'acc' is not among the eval metrics"):
        train(_model(), loss_fn, batch_fn, _cfg(steps=2, select_metric="acc"), eval_fn=eval_fn)


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = _cfg(eval_every=0)
    real_replace, calls = os.replace, []

    def flaky_replace(src, dst):
        calls.append(str(dst))
        if str(dst).endswith(LAST_CKPT) and len([c for c in calls if c.endswith(LAST_CKPT)]) == 2:
            raise OSError("disk full")  # the second checkpoint (step 8) fails mid-write
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", flaky_replace)
    with pytest.raises(OSError, match="disk full"):
        train(_model(), loss_fn, batch_fn, cfg, run_dir=tmp_path)
    monkeypatch.setattr(os, "replace", real_replace)
    assert load_checkpoint(tmp_path / LAST_CKPT)["step"] == 4  # the previous checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == [LAST_CKPT]  # no temporary files left over
    model, ref = _model(), _model()
    train(model, loss_fn, batch_fn, cfg, run_dir=tmp_path)  # resumes from step 4
    train(ref, loss_fn, batch_fn, cfg)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), ref.parameters()))


def test_resume_refuses_bad_checkpoints_and_changed_config(tmp_path):
    train(_model(), loss_fn, batch_fn, _cfg(steps=4), run_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"last\.pt: cannot resume: field 'lr' was 0\.03"):
        train(_model(), loss_fn, batch_fn, _cfg(steps=8, lr=0.1), run_dir=tmp_path)
    data = (tmp_path / LAST_CKPT).read_bytes()
    (tmp_path / LAST_CKPT).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot load checkpoint, the file is truncated"):
        train(_model(), loss_fn, batch_fn, _cfg(steps=8), run_dir=tmp_path)
    assert (tmp_path / LAST_CKPT).read_bytes() == data[: len(data) // 2]  # not overwritten
    res = train(_model(), loss_fn, batch_fn, _cfg(steps=8), run_dir=tmp_path, resume=False)
    assert res.resumed_from is None and load_checkpoint(tmp_path / LAST_CKPT)["step"] == 8
    wrong = nn.Linear(3, 2).to(D)
    with pytest.raises(CheckpointError, match=r"last\.pt: cannot resume from this checkpoint"):
        train(wrong, loss_fn, batch_fn, _cfg(steps=9), run_dir=tmp_path)


def test_bad_losses_and_frozen_models_are_refused():
    with pytest.raises(FloatingPointError, match="loss is nan at step 0"):
        train(_model(), lambda m, b: m(b[0]).sum() * float("nan"), batch_fn, _cfg(ckpt_every=0))
    frozen = _model().requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter requires grad"):
        train(frozen, loss_fn, batch_fn, _cfg())


def test_train_config_values_are_checked():
    with pytest.raises(ConfigError, match="field 'lr'"):
        TrainConfig(lr=-1.0)
    with pytest.raises(ConfigError, match="field 'schedule'"):
        apply_overrides(TrainConfig(), {"schedule": "exponential"})
    with pytest.raises(ConfigError, match="field 'steps': expected an integer"):
        apply_overrides(TrainConfig(), {"steps": "ten"})
    with pytest.raises(ConfigError, match="unknown field 'learning_rate'"):
        apply_overrides(TrainConfig(), {"learning_rate": "0.1"})
    cfg, _ = parse_config(TrainConfig, {"quick": TrainConfig(steps=5)},
                          ["--preset", "quick", "--progress=none", "--betas=0.8,0.99", "--schedule", "linear"])
    assert cfg.steps == 5 and cfg.progress is None and cfg.betas == (0.8, 0.99) and cfg.schedule == "linear"


def test_progress_bar_quiet_unless_asked(capsys):
    train(_model(), loss_fn, batch_fn, _cfg(ckpt_every=0, progress=None))  # pytest's stderr is not a TTY
    assert capsys.readouterr().err == ""
    train(_model(), loss_fn, batch_fn, _cfg(ckpt_every=0, progress=True))
    assert "train" in capsys.readouterr().err


def _scripted_eval(values):
    """eval_fn returning ``values`` in turn (the metric sequence is fixed, so the stop step is known)."""
    it = iter(values)
    return lambda model: {"val_mse": next(it)}


@pytest.mark.parametrize("patience, stop_eval", [(1, 3), (2, 4), (3, 8)])
def test_patience_stops_after_that_many_evaluations_without_improvement(tmp_path, patience, stop_eval):
    # evals at steps 3, 6, ...: best at eval 2 (4.0), then 4.5, 4.6 (no gain), 3.0 (gain), then none
    values = [5.0, 4.0, 4.5, 4.6, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9]
    res = train(_model(), loss_fn, batch_fn, _cfg(steps=30, patience=patience),
                eval_fn=_scripted_eval(values), run_dir=tmp_path)
    assert res.stopped_early and res.step == 3 * stop_eval
    assert len(res.history) == stop_eval
    best = min(values[:stop_eval])
    assert res.best_metric == best and res.best_step == 3 * (values.index(best) + 1)
    # a second call resumes from last.pt and stops at once: no step, no evaluation
    again = train(_model(), loss_fn, batch_fn, _cfg(steps=30, patience=patience),
                  eval_fn=_scripted_eval([]), run_dir=tmp_path)
    assert again.step == res.step and len(again.history) == stop_eval and again.stopped_early


def test_patience_zero_trains_every_step():
    res = train(_model(), loss_fn, batch_fn, _cfg(steps=12, patience=0), eval_fn=_scripted_eval([5.0, 6.0, 7.0, 8.0]))
    assert res.step == 12 and not res.stopped_early and res.best_step == 3
