"""Objectives: standard and composed losses, sequence log-likelihoods, post-hoc prediction."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from _tolerances import TOL
from composedft.compose import freeze
from composedft.objectives import (composed_mse, posthoc_predict, sequence_logprob, standard_mse,
                                   standard_nll)

D = torch.float64


def _mlp(seed, dims=(3, 5, 2), act=nn.Tanh):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1]).to(D)


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_standard_mse_value_and_shape_check():
    pred = torch.tensor([[1.0, 2.0], [3.0, 5.0]], dtype=D)
    y = torch.tensor([[0.0, 2.0], [1.0, 1.0]], dtype=D)
    assert standard_mse(pred, y).item() == pytest.approx((1 + 0 + 4 + 16) / 4, rel=1e-15)
    with pytest.raises(ValueError, match=r"\(2, 2\) != target shape \(2, 1\)"):
        standard_mse(pred, y[:, :1])


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_identity_denoiser_gives_standard_gradients(lam):
    f = _mlp(0)
    x = torch.randn(7, 3, dtype=D, generator=torch.Generator().manual_seed(1))
    y = torch.randn(7, 2, dtype=D, generator=torch.Generator().manual_seed(2))
    g_comp = _grads(f, composed_mse(f, freeze(nn.Identity()), x, y, lam=lam))
    g_std = _grads(f, standard_mse(f(x), y))
    # mse(Π(f), y) + λ mse(f, y) with Π = id is (1 + λ) times the standard loss
    for a, b in zip(g_comp, g_std):
        torch.testing.assert_close(a, (1 + lam) * b, **TOL["same_float64"])
    assert sum(float(b.abs().sum()) for b in g_std) > 1e-3  # a non-trivial comparison


def test_composed_pathwise_gradient_matches_finite_differences():
    f = _mlp(3)
    denoiser = freeze(_mlp(4, dims=(2, 6, 2)))  # a non-linear frozen Π
    x = torch.randn(5, 3, dtype=D, generator=torch.Generator().manual_seed(5))
    y = torch.randn(5, 2, dtype=D, generator=torch.Generator().manual_seed(6))
    lam = 0.3

    def loss():
        return composed_mse(f, denoiser, x, y, lam=lam)

    analytic = _grads(f, loss())
    h = 1e-6
    with torch.no_grad():
        for p, g in zip(f.parameters(), analytic):
            flat, gflat = p.view(-1), g.view(-1)
            for i in range(flat.numel()):
                old = flat[i].item()
                flat[i] = old + h
                up = loss().item()
                flat[i] = old - h
                down = loss().item()
                flat[i] = old
                assert gflat[i].item() == pytest.approx((up - down) / (2 * h), **{
                    "rel": TOL["fd_float64"]["rtol"], "abs": TOL["fd_float64"]["atol"]})
    # the gradient really goes through Π: it differs from the one that ignores Π
    ignore_pi = _grads(f, standard_mse(f(x), y) * (1 + lam))
    assert max(float((a - b).abs().max()) for a, b in zip(analytic, ignore_pi)) > 1e-3
    assert all(p.grad is None for p in denoiser.parameters())


def _seq_case():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 6, dtype=D, generator=g, requires_grad=True)
    tokens = torch.tensor([[2, 3, 4, 1, 5], [3, 3, 0, 0, 0], [5, 0, 0, 0, 0]])  # pad_id 0, right-padded
    return logits, tokens, [5, 2, 1]


def test_sequence_logprob_matches_explicit_sum_and_masks_pads():
    logits, tokens, lengths = _seq_case()
    lp = sequence_logprob(logits, tokens, pad_id=0)
    logsm = torch.log_softmax(logits.detach(), -1)
    expected = [sum(logsm[b, t, tokens[b, t]].item() for t in range(n)) for b, n in enumerate(lengths)]
    torch.testing.assert_close(lp.detach(), torch.tensor(expected, dtype=D), **TOL["same_float64"])
    # anything at pad positions (even -inf / huge values) changes nothing
    changed = logits.detach().clone()
    changed[1, 2:] = torch.randn(3, 6, dtype=D) * 50
    changed[2, 1:, 0] = -math.inf
    assert torch.equal(sequence_logprob(changed, tokens, pad_id=0), lp.detach())
    # and pad positions receive exactly zero gradient
    lp.sum().backward()
    assert torch.count_nonzero(logits.grad[1, 2:]) == 0 and torch.count_nonzero(logits.grad[2, 1:]) == 0
    assert torch.count_nonzero(logits.grad[0]) == 5 * 6


def test_sequence_logprob_length_normalization_divides_by_true_length():
    logits, tokens, lengths = _seq_case()
    total = sequence_logprob(logits, tokens, pad_id=0)
    norm = sequence_logprob(logits, tokens, pad_id=0, length_normalize=True)
    torch.testing.assert_close(norm, total / torch.tensor(lengths, dtype=D), **TOL["same_float64"])
    with pytest.raises(ValueError, match=r"\[B,T,V\]"):
        sequence_logprob(logits[0], tokens, pad_id=0)


def test_sequence_logprob_upcasts_bf16():
    logits, tokens, _ = _seq_case()
    lp16 = sequence_logprob(logits.detach().to(torch.bfloat16), tokens, pad_id=0)
    assert lp16.dtype == torch.float32
    ref = sequence_logprob(logits.detach().to(torch.bfloat16).to(D), tokens, pad_id=0)
    torch.testing.assert_close(lp16.to(D), ref, rtol=1e-5, atol=1e-5)


def test_standard_nll_reductions_and_label_smoothing():
    logits, tokens, lengths = _seq_case()
    lp = sequence_logprob(logits, tokens, pad_id=0)
    n_tok = sum(lengths)
    total = standard_nll(logits, tokens, pad_id=0)
    torch.testing.assert_close(total, -lp.sum(), **TOL["same_float64"])
    torch.testing.assert_close(standard_nll(logits, tokens, 0, reduction="mean_tokens"), total / n_tok,
                               **TOL["same_float64"])
    torch.testing.assert_close(standard_nll(logits, tokens, 0, reduction="mean"), total / n_tok,
                               **TOL["same_float64"])
    per = standard_nll(logits, tokens, 0, reduction="none")
    assert per.shape == tokens.shape and torch.count_nonzero(per[tokens == 0]) == 0
    torch.testing.assert_close(per.sum(1), -lp, **TOL["same_float64"])
    # label smoothing ε: (1-ε)(-log p_y) + ε·mean_v(-log p_v) per non-pad token
    eps = 0.1
    logsm = torch.log_softmax(logits.detach(), -1)
    mask = tokens != 0
    nll_y = -logsm.gather(-1, tokens[..., None])[..., 0]
    smooth = (1 - eps) * nll_y + eps * (-logsm.mean(-1))
    expected = smooth[mask].sum()
    torch.testing.assert_close(standard_nll(logits, tokens, 0, label_smoothing=eps).detach(), expected,
                               **TOL["same_float64"])
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        standard_nll(logits, tokens, 0, reduction="avg")


def test_posthoc_predict_is_denoiser_of_f_without_grad_and_restores_modes():
    f = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.Linear(4, 2)).to(D)
    denoiser = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).to(D)
    f.train(); denoiser.train()
    x = torch.randn(6, 3, dtype=D)
    out = posthoc_predict(f, denoiser, x)
    assert not out.requires_grad
    assert f.training and denoiser.training  # modes restored
    f.eval(); denoiser.eval()
    with torch.no_grad():
        torch.testing.assert_close(out, denoiser(f(x)), rtol=0, atol=0)
