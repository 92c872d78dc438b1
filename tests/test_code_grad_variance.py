"""The reference estimator in the code pipeline and ``python -m simulations.code grad-variance``.

Tiny float64 Transformers (vocabulary <pad> <bos> <eos> <unk> a b). Every loss is re-derived here
from the models' forward passes (not from the pipeline's helpers), and the command's variance is
compared with numpy's variance over gradients computed here, draw by draw.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from _tolerances import TOL
from composedft.config import ConfigError, parse_config
from composedft.seeding import derive_seed, torch_generator
from composedft.sequence import ComposedSequence
from simulations.code import grad_variance as G
from simulations.code import composed as C
from simulations.code import seq2seq_train as T
from simulations.code.__main__ import main as code_main
from simulations.code.config import PRESETS, CodeConfig
from simulations.code.decode import BOS, EOS, PAD
from simulations.code.model import Seq2SeqTransformer

from test_code_composed_exact import _tiny as tiny_model

UNK, A, B_, V, CAP = 3, 4, 5, 6, 3


def _tiny(seed: int) -> Seq2SeqTransformer:
    return tiny_model(seed, V)


def _setup():
    model = ComposedSequence(_tiny(1), _tiny(0))
    batch = {"src": torch.tensor([[A, B_, EOS], [B_, EOS, PAD]]), "step": 0,
             "tgt_out": torch.tensor([[A, EOS, PAD], [B_, A, EOS]])}
    batch["tgt_in"] = T.teacher_forcing_inputs(batch["tgt_out"])
    return model, batch


def _tf(y: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], 1)


def _reward(model, samples, tgt_out, per_token: bool) -> torch.Tensor:
    """log p_Π(y | ŷ) per row from Π's forward (gold pads masked)."""
    with torch.no_grad():
        lp = torch.log_softmax(model.denoiser(samples, _tf(tgt_out)), -1).gather(-1, tgt_out[..., None])[..., 0]
    real = tgt_out != PAD
    total = (lp * real).sum(1)
    return total / real.sum(1) if per_token else total


def _manual_reference(model, batch, samples, lam=0.0, count_pads=True):
    """Σ_b clamp(Σ_t log softmax_f(ŷ_bt), -50) · NLL_Π,b / 10 / n_tokens + λ NLL (docs/method.md §3.4)."""
    f = model.base_predictor.eval()
    lp = torch.log_softmax(f(batch["src"], _tf(samples)), -1).gather(-1, samples[..., None])[..., 0]
    if not count_pads:
        lp = torch.where(samples != PAD, lp, torch.zeros_like(lp))
    logp = lp.sum(1).clamp(min=-50.0)  # every column, pads included
    tgt = batch["tgt_out"]
    reward = _reward(model, samples, tgt.repeat_interleave(samples.size(0) // tgt.size(0), 0), per_token=False)
    n = float((tgt != PAD).sum())
    gold = torch.log_softmax(f(batch["src"], _tf(tgt)), -1).gather(-1, tgt[..., None])[..., 0]
    nll = -(gold * (tgt != PAD)).sum() / n
    return (logp * -reward).sum() / (10 * n) + lam * nll


def _manual_ours(model, batch, samples, k, scale):
    """-scale/(BK) Σ (r - b_loo) log q_f(ŷ), q_f masked, pads and the forced <eos> excluded."""
    f = model.base_predictor.eval()
    toks = samples[:, :CAP]
    logits = f(batch["src"].repeat_interleave(k, 0), _tf(toks)).clone()
    logits[..., [PAD, BOS, UNK]] = -float("inf")
    lp = torch.log_softmax(logits, -1).gather(-1, toks[..., None])[..., 0]
    logq = torch.where(toks != PAD, lp, torch.zeros_like(lp)).sum(1).view(-1, k)
    r = _reward(model, samples, batch["tgt_out"].repeat_interleave(k, 0), per_token=True).view(-1, k)
    b = (r.sum(1, keepdim=True) - r) / (k - 1)
    return -scale * ((r - b) * logq).mean()


def _flat_grad(loss, model):
    params = list(model.base_predictor.parameters())
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]).numpy()


def test_reference_loss_and_gradient_match_the_formula_with_pads_counted():
    model, batch = _setup()
    samples = torch.tensor([[A, EOS, PAD, PAD], [B_, A, B_, EOS]])  # row 0 has two pad columns
    obj = C.ComposedObjective(estimator="reference", k=4, baseline="loo", lam=0.3, scale=7.0, max_len=CAP)
    loss, stats = C.composed_loss_from_samples(model, batch, samples, obj, CAP)
    want = _manual_reference(model, batch, samples, lam=0.3)
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-12)
    want_grad = _flat_grad(want, model)
    np.testing.assert_allclose(_flat_grad(loss, model), want_grad, rtol=1e-10, atol=1e-13)
    assert stats["clamped"] == 0.0  # the tiny model's log-probs stay above -50: the gradient is live
    # counting the pads matters here: with them masked the gradient differs
    masked = _manual_reference(model, batch, samples, lam=0.3, count_pads=False)
    assert not np.allclose(_flat_grad(masked, model), want_grad, rtol=1e-3, atol=0)


def test_reference_draws_one_sample_per_input_whatever_k():
    model, batch = _setup()
    obj = C.ComposedObjective(estimator="reference", k=4, lam=0.0, max_len=CAP, seed=5, cap_factor=1.0, cap_margin=0)
    loss, _ = C.composed_loss(model, batch, obj)
    cap = C.sample_cap(batch["tgt_out"], obj)
    samples = model.sample(batch["src"], 1, cap, generator=torch_generator(derive_seed(5, "samples", 0)))
    assert samples.size(0) == 2
    torch.testing.assert_close(loss, _manual_reference(model, batch, samples), **TOL["reordered_float64"])
    with pytest.raises(ValueError, match="one sample per input"):
        C.composed_loss_from_samples(model, batch, samples.repeat_interleave(2, 0), obj, cap)


def test_grad_variance_equals_numpy_variance_of_independent_gradients():
    model, batch = _setup()
    K, R, scale = 3, 5, 1.3
    obj = C.ComposedObjective(k=K, baseline="loo", lam=0.9, scale=scale, max_len=CAP, cap_factor=1.0, cap_margin=0)
    got = G.measure(model, batch, obj, R, seed=11)
    cap = C.sample_cap(batch["tgt_out"], obj)
    for name, k in (("ours", K), ("reference", 1)):
        rows = []
        for r in range(R):
            gen = torch_generator(derive_seed(derive_seed(11, "grad-variance", r), "samples", 0))
            samples = model.sample(batch["src"], k, cap, generator=gen)
            loss = (_manual_ours(model, batch, samples, K, scale) if name == "ours"
                    else _manual_reference(model, batch, samples))
            rows.append(_flat_grad(loss, model))
        g = np.stack(rows)
        var, msq = np.var(g, axis=0, ddof=1).mean(), (g.mean(0) ** 2).sum()
        assert var > 0 and msq > 0
        assert got[name]["variance"] == pytest.approx(var, rel=1e-10)
        assert got[name]["mean_grad_sq_norm"] == pytest.approx(msq, rel=1e-10)
        assert got[name]["normalised_variance"] == pytest.approx(var / msq, rel=1e-10)
    assert got["ratio"]["variance"] == pytest.approx(got["reference"]["variance"] / got["ours"]["variance"])
    with pytest.raises(ValueError, match="repeats"):
        G.measure(model, batch, obj, 1)


def test_the_command_runs_on_the_toy_preset(tmp_path, capsys):
    out = tmp_path / "gv.json"
    assert code_main(["grad-variance", "--repeats", "2", "--batch", "2", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "reference/ours: variance" in text
    res = json.loads(out.read_text())
    assert res["repeats"] == 2 and res["ours"]["variance"] > 0 and res["k"] == PRESETS["toy"].composed_k


@pytest.mark.parametrize("argv,match", [(["--repeats", "1"], "repeats must be >= 2"),
                                        (["--run", "/nonexistent/run"], "not a directory")])
def test_the_command_refuses_bad_input(argv, match, capsys):
    assert code_main(["grad-variance", *argv]) == 2
    assert match in capsys.readouterr().err


def test_config_reference_ignores_k_and_baseline_and_names_a_bad_estimator():
    CodeConfig(composed_estimator="reference", composed_k=1, composed_baseline="loo")  # k, baseline unused
    CodeConfig(composed_estimator="reference", composed_k=4)
    with pytest.raises(ConfigError, match="composed_k"):
        CodeConfig(composed_k=1, composed_baseline="loo")
    with pytest.raises(ConfigError, match="composed_estimator"):
        parse_config(CodeConfig, PRESETS, ["--preset", "toy", "--composed_estimator=fairseq"])
    with pytest.raises(ValueError, match="unknown composed estimator"):
        C.samples_per_input(C.ComposedObjective(estimator="fairseq"))
