"""Score-function estimator of ∇ E_ŷ[log p_Π(y|ŷ)]: unbiasedness by enumeration, baselines, errors.

The toy base predictor is an autoregressive model of sequences of length <= 2 over the tokens
{1 = <eos>, 2, 3} (0 is <pad>): the first token has logits θ1 [3]; unless it is <eos>, the second
has logits θ2[a] [3]. After <eos> the model still emits logits at the pad position (with a finite
pad logit), so a log p(ŷ) that counted pads (the reference code's bug) would be biased. There are 7
possible outputs, so E_ŷ[r(ŷ)] and its exact gradient are computed by enumeration, with the
probabilities written out independently of ``sequence_logprob``.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from _tolerances import TOL
from composedft.estimators import baseline_values, composed_sequence_loss, score_function_surrogate
from composedft.objectives import sequence_logprob

D = torch.float64
PAD, EOS, V = 0, 1, 4
NEG = torch.tensor(-torch.inf, dtype=D)
Z = TOL["mc_z"]

THETA = torch.tensor([0.3, -0.4, 0.8,                      # θ1: logits of tokens 1..3 at position 0
                      0.5, 0.1, -0.2, 1.0, 0.0, -0.7, -0.3, 0.6, 0.2], dtype=D)  # θ2[a-1]: position 1
Y = torch.tensor([3, 2])                                   # gold target for the denoiser
_g = torch.Generator().manual_seed(123)
PI_W = torch.randn(2, V, V, dtype=D, generator=_g) * 1.5   # Π logits at t: W[t, ŷ1] + U[t, ŷ2]
PI_U = torch.randn(2, V, V, dtype=D, generator=_g) * 1.5


def model_logits(theta: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
    """Logits [N, 2, V] of the sequences ``yhat`` [N, 2] under per-row parameters ``theta`` [N, 12]."""
    n = yhat.size(0)
    l0 = torch.cat([NEG.expand(n, 1), theta[:, :3]], 1)
    rows = theta[:, 3:].view(n, 3, 3)[torch.arange(n), yhat[:, 0] - 1]          # θ2[ŷ1]
    pad_logit = torch.where(yhat[:, :1] == EOS, torch.zeros(n, 1, dtype=D), NEG.expand(n, 1))
    return torch.stack([l0, torch.cat([pad_logit, rows], 1)], 1)


def _reward_direct(yhat: torch.Tensor) -> torch.Tensor:
    """r(ŷ) = log p_Π(y | ŷ) for a fixed toy denoiser Π (no gradient)."""
    logits = PI_W[:, yhat[:, 0]].transpose(0, 1) + PI_U[:, yhat[:, 1]].transpose(0, 1)  # [N, 2, V]
    return sequence_logprob(logits, Y.expand(yhat.size(0), 2), pad_id=PAD)


_ALL_PAIRS = torch.tensor(list(itertools.product(range(V), range(V))))
_REWARD_TABLE = _reward_direct(_ALL_PAIRS)  # the same numbers, looked up (fast for 80k samples)


def reward(yhat: torch.Tensor) -> torch.Tensor:
    return _REWARD_TABLE[yhat[:, 0] * V + yhat[:, 1]]


OUTCOMES = torch.tensor([[EOS, PAD]] + [[a, b] for a, b in itertools.product([2, 3], [1, 2, 3])])


def test_sampler_matches_the_enumerated_distribution():
    yhat = sample(200_000, torch.Generator().manual_seed(0))
    p1 = torch.softmax(THETA[:3], 0)
    p2 = torch.softmax(THETA[3:].view(3, 3), 1)
    for a, b in OUTCOMES.tolist():
        p = float(p1[a - 1] * (p2[a - 1, b - 1] if a != EOS else 1.0))
        freq = float(((yhat[:, 0] == a) & (yhat[:, 1] == b)).double().mean())
        assert abs(freq - p) <= Z * (p * (1 - p) / 200_000) ** 0.5
    assert torch.equal(reward(OUTCOMES), _reward_direct(OUTCOMES))


def exact_gradient() -> torch.Tensor:
    theta = THETA.clone().requires_grad_()
    p1 = torch.softmax(theta[:3], 0)
    p2 = torch.softmax(theta[3:].view(3, 3), 1)
    probs = torch.stack([p1[a - 1] * (p2[a - 1, b - 1] if a != EOS else 1.0) for a, b in OUTCOMES.tolist()])
    assert abs(float(probs.detach().sum()) - 1) < 1e-12
    (probs * reward(OUTCOMES)).sum().backward()
    return theta.grad


def sample(n: int, gen: torch.Generator) -> torch.Tensor:
    c1 = torch.softmax(THETA[:3], 0).cumsum(0)
    c2 = torch.softmax(THETA[3:].view(3, 3), 1).cumsum(1)
    u = torch.rand(n, 2, dtype=D, generator=gen)  # inverse-CDF sampling
    a = (u[:, :1] > c1[None, :2]).sum(1) + 1
    b = (u[:, 1:] > c2[a - 1, :2]).sum(1) + 1
    return torch.stack([a, torch.where(a == EOS, torch.full_like(b, PAD), b)], 1)


def estimates(baseline: str, n: int, k: int, seed: int, pad_id: int = PAD) -> torch.Tensor:
    """[n, 12]: n independent K-sample estimates of ∇E[r] from the surrogate's gradient.

    Each replicate has its own copy of θ, so the gradient w.r.t. row i of the copies is -1/n
    times replicate i's estimate (the surrogate averages over the batch, with a minus sign).
    """
    yhat = sample(n * k, torch.Generator().manual_seed(seed))
    theta = THETA.expand(n, -1).clone().requires_grad_()
    logits = model_logits(theta.repeat_interleave(k, 0), yhat)
    logp = sequence_logprob(logits, yhat, pad_id=pad_id).view(n, k)
    score_function_surrogate(logp, reward(yhat).view(n, k), baseline=baseline).backward()
    return -n * theta.grad


@pytest.fixture(scope="module")
def exact():
    g = exact_gradient()
    assert float(g.abs().max()) > 0.05  # a non-degenerate target
    assert torch.count_nonzero(g[3:6]) == 0  # θ2[<eos>] only reaches pad positions
    return g


@pytest.mark.parametrize("baseline,k", [("none", 1), ("none", 4), ("loo", 2), ("loo", 4)])
def test_score_function_estimate_is_unbiased(exact, baseline, k):
    n = 10_000
    est = estimates(baseline, n, k, seed=1 + k)
    mean, se = est.mean(0), est.std(0) / n ** 0.5
    assert float(se.max()) < float(exact.abs().max()) / (2 * Z)  # would detect a 50% bias
    err = (mean - exact).abs()
    assert bool((err <= Z * se + 1e-12).all()), f"z-scores {(err / se).tolist()}"


def test_mean_baseline_is_loo_scaled_by_k_minus_1_over_k(exact):
    n, k = 10_000, 4
    est_mean, est_loo = estimates("mean", n, k, seed=7), estimates("loo", n, k, seed=7)
    torch.testing.assert_close(est_mean, (k - 1) / k * est_loo, **TOL["same_float64"])
    mean, se = est_mean.mean(0), est_mean.std(0) / n ** 0.5
    assert bool(((mean - (k - 1) / k * exact).abs() <= Z * se + 1e-12).all())
    assert bool(((mean - exact).abs() > Z * se).any())  # the biased variant is detected as biased


def test_counting_pads_would_bias_the_estimate(exact):
    """The reference code's bug (pads in log p(ŷ)) is caught by the same statistical test."""
    n = 10_000
    est = estimates("loo", n, 4, seed=9, pad_id=-1)  # -1 matches no token: pads are counted
    mean, se = est.mean(0), est.std(0) / n ** 0.5
    assert bool(((mean - exact).abs() > Z * se).any())
    est_ok = estimates("loo", n, 4, seed=9)
    assert torch.count_nonzero(est_ok[:, 3:6]) == 0  # masked: no gradient where the pad logit is


def test_leave_one_out_lowers_variance():
    n, k = 10_000, 4
    var_none = estimates("none", n, k, seed=11).var(0).sum()
    var_loo = estimates("loo", n, k, seed=11).var(0).sum()
    # rewards are log-probabilities around -3, so without a baseline every sample pushes hard
    assert float(var_loo) < 0.25 * float(var_none), (float(var_loo), float(var_none))


def test_scale_and_reward_detached():
    g = torch.Generator().manual_seed(0)
    logp = torch.randn(3, 4, dtype=D, generator=g, requires_grad=True)
    r = torch.randn(3, 4, dtype=D, generator=g, requires_grad=True)
    score_function_surrogate(logp, r, "loo", scale=2.5).backward()
    assert r.grad is None
    adv = r.detach() - (r.detach().sum(1, keepdim=True) - r.detach()) / 3
    torch.testing.assert_close(logp.grad, -2.5 * adv / 12, **TOL["same_float64"])


def test_baseline_values():
    r = torch.tensor([[1.0, 2.0, 6.0]], dtype=D)
    torch.testing.assert_close(baseline_values(r, "loo"), torch.tensor([[4.0, 3.5, 1.5]], dtype=D))
    torch.testing.assert_close(baseline_values(r, "mean"), torch.full((1, 3), 3.0, dtype=D))
    assert torch.count_nonzero(baseline_values(r, "none")) == 0


def test_bad_inputs_are_refused():
    lp = torch.zeros(2, 1, dtype=D, requires_grad=True)
    with pytest.raises(ValueError, match="needs K >= 2"):
        score_function_surrogate(lp, torch.zeros(2, 1, dtype=D), "loo")
    with pytest.raises(ValueError, match="unknown baseline 'avg'"):
        score_function_surrogate(torch.zeros(2, 3), torch.zeros(2, 3), "avg")
    with pytest.raises(ValueError, match=r"\[B, K\]"):
        score_function_surrogate(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="non-finite reward"):
        score_function_surrogate(torch.zeros(1, 2), torch.tensor([[0.0, -torch.inf]]))


def test_composed_sequence_loss_adds_lambda_nll():
    g = torch.Generator().manual_seed(3)
    logp = torch.randn(2, 3, dtype=D, generator=g, requires_grad=True)
    r = torch.randn(2, 3, dtype=D, generator=g)
    nll = torch.tensor(1.7, dtype=D, requires_grad=True)
    loss, stats = composed_sequence_loss(logp, r, nll, lam=0.5, baseline="loo", scale=2.0)
    expected = score_function_surrogate(logp, r, "loo", 2.0) + 0.5 * nll
    torch.testing.assert_close(loss, expected, **TOL["same_float64"])
    assert stats["reward"] == pytest.approx(float(r.mean())) and stats["nll"] == pytest.approx(1.7)
    assert stats["reward_std"] == pytest.approx(float(r.std(1).mean()))
    with pytest.raises(ValueError, match="needs nll="):
        composed_sequence_loss(logp, r, lam=1.0)
