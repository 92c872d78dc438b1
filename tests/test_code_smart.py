"""SMART's smoothness term on the Transformer's source embeddings (methods smart, composed+smart)."""
from __future__ import annotations

import pytest
import torch

from composedft.seeding import derive_seed, torch_generator
from composedft.smart import SmartConfig, adversarial_perturbation, sym_kl
from simulations.code import seq2seq_train as T
from simulations.code.model import ModelConfig, Seq2SeqTransformer

D = torch.float64


def _model_and_batch():
    torch.manual_seed(0)
    m = Seq2SeqTransformer(ModelConfig(vocab_size=9, d_model=8, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=16,
                                       dropout=0.0, attn_dropout=0.0, relu_dropout=0.0)).to(D).eval()
    tgt_out = torch.tensor([[5, 6, 2, 0], [7, 2, 0, 0]])  # pads (0) after <eos> (2)
    batch = {"src": torch.tensor([[4, 5, 6, 2], [8, 2, 0, 0]]), "tgt_out": tgt_out,
             "tgt_in": T.teacher_forcing_inputs(tgt_out), "step": 3}
    return m, batch


def test_zero_radius_gives_zero():
    m, b = _model_and_batch()
    cfg = SmartConfig(eps=0.0, init_std=0.0, step_size=0.0)
    assert float(T.smart_term(m, b, cfg, seed=1).detach()) == 0.0


def test_term_is_the_masked_mean_symmetric_kl_at_the_computed_perturbation():
    """Recompute the perturbation and the divergence independently of smart_term."""
    m, b = _model_and_batch()
    cfg = SmartConfig(eps=1e-2, init_std=1e-2, step_size=1e-2)
    got = T.smart_term(m, b, cfg, seed=7)
    real = (b["tgt_out"] != 0).to(D)
    noise = torch.randn(b["src"].shape[0], b["src"].shape[1], 8,
                        generator=torch_generator(derive_seed(7, "smart", 3)), dtype=D)
    clean = m(b["src"], b["tgt_in"])
    div = lambda p, q: (sym_kl(p, q) * real).sum(-1)  # noqa: E731
    delta = adversarial_perturbation(lambda d: m(b["src"], b["tgt_in"], src_delta=d), torch.zeros_like(noise), clean,
                                     cfg, divergence=div, example_dims=1, noise=noise)
    assert float(delta.abs().max()) <= cfg.eps + 1e-15
    want = (sym_kl(m(b["src"], b["tgt_in"], src_delta=delta), clean) * real).sum() / real.sum()
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    assert float(got) > 0


def test_small_radius_limit_is_quadratic():
    """Symmetric KL is quadratic in the logit change for small perturbations, and the ascent's
    direction does not depend on the radius there (step = radius): doubling ε quadruples the term."""
    m, b = _model_and_batch()
    t1 = float(T.smart_term(m, b, SmartConfig(eps=1e-4, init_std=1e-4, step_size=1e-4), seed=2).detach())
    t2 = float(T.smart_term(m, b, SmartConfig(eps=2e-4, init_std=2e-4, step_size=2e-4), seed=2).detach())
    assert t2 / t1 == pytest.approx(4.0, rel=1e-2)


def test_gradient_reaches_the_embeddings():
    m, b = _model_and_batch()
    T.smart_term(m, b, SmartConfig(eps=1e-2, init_std=1e-2, step_size=1e-2), seed=0).backward()
    assert float(m.src_embed.weight.grad.abs().sum()) > 0
