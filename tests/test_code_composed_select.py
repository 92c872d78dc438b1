"""composed_lr_grid: the composed stage trains once per rate and keeps the best Π∘f on validation."""
from __future__ import annotations

import json

import pytest
import torch

from composedft.config import ConfigError
from composedft.io import load_checkpoint
from simulations.code import exec_acc, pipeline
from simulations.code.composed_select import candidate_name, select_rate

from test_code_pipeline_stages import tiny_cfg, write_tiny_data

GRID = (1e-4, 3e-3, 1e-2)


def _row(lr, acc, nll):
    return {"lr": lr, "val_exec": acc, "best_val_nll": nll}


def test_select_rate_takes_the_highest_accuracy_then_the_lower_nll_then_the_smaller_rate():
    assert select_rate([_row(1e-4, 0.5, 0.3), _row(3e-4, 0.7, 0.9), _row(1e-3, 0.6, 0.1)])["lr"] == 3e-4
    assert select_rate([_row(1e-4, 0.5, 0.3), _row(3e-4, 0.5, 0.2)])["lr"] == 3e-4  # tie: lower NLL
    assert select_rate([_row(3e-4, 0.5, 0.2), _row(1e-4, 0.5, 0.2)])["lr"] == 1e-4  # full tie: smaller rate
    with pytest.raises(ValueError):
        select_rate([])


@pytest.mark.parametrize("bad", [(0.0,), (1e-4, -1e-3), (float("nan"),)])
def test_a_grid_with_a_rate_that_is_not_positive_is_refused_naming_the_field(bad):
    with pytest.raises(ConfigError, match="composed_lr_grid"):
        tiny_cfg(composed_lr_grid=bad)


def _run_grid(tmp_path, monkeypatch, scripted):
    calls = []

    def fake_exec_accuracy(cfg, tok, f, examples, max_len, *, denoiser=None, **kw):
        calls.append({"denoiser": denoiser, "state": {k: v.clone() for k, v in f.state_dict().items()},
                      "n": len(examples)})
        acc = scripted[len(calls) - 1]
        return {"acc": acc, "n": 4, "ok": round(4 * acc)}

    monkeypatch.setattr(exec_acc, "exec_accuracy", fake_exec_accuracy)
    monkeypatch.setattr("simulations.code.evaluator.Evaluator", lambda **kw: None)  # no g++ needed
    write_tiny_data(tmp_path)
    cfg = tiny_cfg(composed_lr_grid=GRID, composed_steps=3, methods=("standard", "composed"))
    pipeline.run(cfg, tmp_path, ("vocab", "denoiser", "standard", "composed"))
    return cfg, calls


def test_the_grid_keeps_the_candidate_with_the_best_val_accuracy_of_the_composition(tmp_path, monkeypatch):
    cfg, calls = _run_grid(tmp_path, monkeypatch, [0.25, 0.75, 0.5])
    assert len(calls) == 3 and all(c["n"] == 4 for c in calls)  # every candidate, on the 4 val programs
    assert all(c["denoiser"] is not None for c in calls)  # scored as Π∘f, not f alone
    models = tmp_path / "models"
    cands = {lr: load_checkpoint(models / f"{candidate_name('composed', lr)}.pt")["model"] for lr in GRID}
    chosen = load_checkpoint(models / "composed.pt")["model"]
    assert all(torch.equal(chosen[k], v) for k, v in cands[GRID[1]].items())
    for lr in (GRID[0], GRID[2]):  # the rates move f differently, so the choice is visible
        assert not all(torch.equal(chosen[k], v) for k, v in cands[lr].items())
    for c, lr in zip(calls, GRID):  # each score belongs to its own candidate
        assert all(torch.equal(c["state"][k], v) for k, v in cands[lr].items())
    rec = json.loads((tmp_path / "manifest.json").read_text())["stages"]["composed"]
    assert rec["selected_lr"] == GRID[1]
    assert [r["lr"] for r in rec["lr_grid"]] == list(GRID)
    assert [r["val_exec"] for r in rec["lr_grid"]] == [0.25, 0.75, 0.5]


def test_a_grid_candidate_is_the_single_rate_run_at_that_rate(tmp_path, monkeypatch):
    """Every candidate shares the stage's seeds, so the rate is the only difference: the candidate
    at rate r equals, bit for bit, the stage run without a grid at composed_lr=r."""
    _run_grid(tmp_path / "grid", monkeypatch, [0.25, 0.75, 0.5])
    single = tmp_path / "single"
    write_tiny_data(single)
    cfg = tiny_cfg(composed_lr=GRID[2], composed_steps=3, methods=("standard", "composed"))
    pipeline.run(cfg, single, ("vocab", "denoiser", "standard", "composed"))
    a = load_checkpoint(tmp_path / "grid" / "models" / f"{candidate_name('composed', GRID[2])}.pt")["model"]
    b = load_checkpoint(single / "models" / "composed.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stopped_grid_resumes_without_retraining_the_finished_candidates(tmp_path, monkeypatch):
    _run_grid(tmp_path, monkeypatch, [0.25, 0.75, 0.5])
    models = tmp_path / "models"
    first = models / f"{candidate_name('composed', GRID[0])}.pt"
    stamp = first.stat().st_mtime_ns
    (models / "composed.pt").unlink()  # as if stopped before the choice
    (models / f"{candidate_name('composed', GRID[2])}.pt").unlink()
    import shutil
    shutil.rmtree(tmp_path / "stages" / candidate_name("composed", GRID[2]))
    _, calls = _run_grid(tmp_path, monkeypatch, [0.5, 0.25, 0.75])
    assert first.stat().st_mtime_ns == stamp  # not retrained
    rec = json.loads((tmp_path / "manifest.json").read_text())["stages"]["composed"]
    assert rec["selected_lr"] == GRID[2] and len(calls) == 3
