"""The reference code's estimator (docs/method.md §3.4): closed forms, the clamp, pads, enumeration.

Toys in float64. The 1-token example has the closed form ∂S/∂θ = -(r / (10 n)) (e_a - softmax θ).
The enumeration toy is a two-position autoregressive model over {<pad>=0, <eos>=1, 2}: the first
token has logits θ[0:2] over {<eos>, 2}; after 2 the second token has logits θ[2:4] over
{<eos>, 2}; after <eos> the second position is a pad whose logit row is θ[4:7] over
{<pad>, <eos>, 2} (finite: f assigns <pad> some probability). Counting that pad in log p(ŷ) adds
exactly p(<eos>) r(<eos>) ∇ log p(<pad> | <eos>) to the expected gradient, which is checked.
"""
from __future__ import annotations

import math

import pytest
import torch

from _tolerances import TOL
from composedft.estimators import (REFERENCE_CLAMP, reference_logprob, reference_sequence_loss,
                                   reference_surrogate)
from composedft.objectives import sequence_logprob

D = torch.float64
SAME = TOL["same_float64"]
NEG = -math.inf


def test_one_token_gradient_equals_the_closed_form():
    theta = torch.tensor([[[0.3, -1.2, 0.7, 0.1]]], dtype=D, requires_grad=True)  # [N=1, T=1, V=4]
    a, r, n = 2, -1.7, 3.0
    loss = reference_surrogate(reference_logprob(theta, torch.tensor([[a]])), torch.tensor([r], dtype=D),
                               n_tokens=n)
    loss.backward()
    p = torch.softmax(theta.detach()[0, 0], 0)
    want = -(r / (10 * n)) * (torch.nn.functional.one_hot(torch.tensor(a), 4).to(D) - p)
    torch.testing.assert_close(theta.grad[0, 0], want, **SAME)
    # the value: log p(a) · NLL_Π / 10 / n
    assert float(loss.detach()) == pytest.approx(math.log(float(p[a])) * (-r) / (10 * n), rel=1e-12)


def test_pads_count_in_the_reference_logprob():
    logits = torch.tensor([[[0.1, 0.5, -0.3, 0.9], [1.5, -0.2, 0.4, 0.0], [0.7, 0.7, -1.0, 0.2]]], dtype=D)
    samples = torch.tensor([[3, 1, 0]])  # a token, <eos>-like id 1, then a pad
    by_hand = sum(float(logits[0, t, s]) - math.log(float(logits[0, t].exp().sum()))
                  for t, s in enumerate([3, 1, 0]))
    got = float(reference_logprob(logits, samples)[0])
    assert got == pytest.approx(by_hand, rel=1e-12)
    pad_term = float(logits[0, 2, 0]) - math.log(float(logits[0, 2].exp().sum()))
    assert got - float(sequence_logprob(logits, samples, pad_id=0)[0]) == pytest.approx(pad_term, rel=1e-12)


def test_the_clamp_zeroes_the_gradient_below_minus_fifty():
    logits = torch.tensor([[[0.0, 30.0], [0.0, 30.0]]], dtype=D, requires_grad=True)  # log p(0) ≈ -30 each
    lp = reference_logprob(logits, torch.tensor([[0, 0]]))
    assert float(lp[0]) == REFERENCE_CLAMP
    reference_surrogate(lp, torch.tensor([-2.0], dtype=D), n_tokens=1.0).backward()
    assert torch.count_nonzero(logits.grad) == 0
    # just above the clamp the gradient is back
    logits2 = torch.tensor([[[0.0, 24.0], [0.0, 24.0]]], dtype=D, requires_grad=True)
    reference_surrogate(reference_logprob(logits2, torch.tensor([[0, 0]])), torch.tensor([-2.0], dtype=D),
                        n_tokens=1.0).backward()
    assert float(logits2.grad.abs().max()) > 0.1


# ---- exact enumeration: the reference is -(1/(10 n)) ∇E[r] plus the pads' bias --------------------

THETA = torch.tensor([0.2, -0.5, 0.4, 0.1, -1.0, 0.3, 0.6], dtype=D)
OUTCOMES = [(1, 0), (2, 1), (2, 2)]               # <eos> <pad> | 2 <eos> | 2 2 (cut at 2 tokens)
REWARD = torch.tensor([-0.8, -2.3, -1.1], dtype=D)  # r(ŷ) = log p_Π(y | ŷ), fixed
N_TOKENS = 2.5


def _logits(theta: torch.Tensor, seq: tuple[int, int]) -> torch.Tensor:
    """[1, 2, 3] logits over {<pad>, <eos>, 2} for the two positions of ``seq``."""
    first = torch.cat([torch.tensor([NEG], dtype=D), theta[0:2]])
    second = theta[4:7] if seq[0] == 1 else torch.cat([torch.tensor([NEG], dtype=D), theta[2:4]])
    return torch.stack([first, second])[None]


def _prob(theta: torch.Tensor, seq: tuple[int, int]) -> torch.Tensor:
    """p(ŷ) of the sampled tokens only (the pad after <eos> is not sampled)."""
    p1 = torch.softmax(theta[0:2], 0)[seq[0] - 1]
    return p1 if seq[0] == 1 else p1 * torch.softmax(theta[2:4], 0)[seq[1] - 1]


def test_expected_reference_gradient_is_scaled_gradient_plus_the_pad_bias():
    theta = THETA.clone().requires_grad_()
    probs = torch.stack([_prob(theta, s) for s in OUTCOMES])
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-14)
    (true_grad,) = torch.autograd.grad((probs * REWARD).sum(), theta)
    expected = torch.zeros_like(THETA)
    for i, seq in enumerate(OUTCOMES):
        th = THETA.clone().requires_grad_()
        s = reference_surrogate(reference_logprob(_logits(th, seq), torch.tensor([seq])), REWARD[i:i + 1],
                                n_tokens=N_TOKENS)
        (g,) = torch.autograd.grad(s, th)
        expected += probs[i].detach() * g
    (pad_grad,) = torch.autograd.grad(torch.log_softmax(theta[4:7], 0)[0], theta)  # ∇ log p(<pad> | <eos>)
    want = -(true_grad + probs[0].detach() * REWARD[0] * pad_grad) / (10 * N_TOKENS)
    torch.testing.assert_close(expected, want, **SAME)
    assert float(pad_grad.abs().max()) > 0.1  # the bias is not vanishing on this toy


def test_reference_sequence_loss_adds_lambda_nll_and_reports():
    logp = torch.tensor([-3.0, -60.0], dtype=D, requires_grad=True)
    reward, nll = torch.tensor([-1.0, -2.0], dtype=D), torch.tensor(0.7, dtype=D)
    loss, stats = reference_sequence_loss(logp.clamp(min=REFERENCE_CLAMP), reward, nll, lam=0.5, n_tokens=4.0)
    assert float(loss.detach()) == pytest.approx((-3.0 * 1.0 + -50.0 * 2.0) / 40.0 + 0.35, rel=1e-12)
    assert stats["clamped"] == 0.5 and stats["reward"] == -1.5 and stats["reward_std"] == 0.0


@pytest.mark.parametrize("logp,reward,n,match", [
    (torch.zeros(2, 1), torch.zeros(2, 1), 1.0, "must both be"),
    (torch.zeros(2), torch.zeros(3), 1.0, "must both be"),
    (torch.zeros(2), torch.tensor([0.0, math.nan]), 1.0, "non-finite"),
    (torch.zeros(2), torch.zeros(2), 0.0, "n_tokens"),
])
def test_reference_surrogate_refuses_bad_input(logp, reward, n, match):
    with pytest.raises(ValueError, match=match):
        reference_surrogate(logp, reward, n_tokens=n)


def test_reference_logprob_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="do not match"):
        reference_logprob(torch.zeros(1, 3, 4), torch.zeros(1, 2, dtype=torch.long))
