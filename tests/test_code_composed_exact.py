"""Exact test of the composed loss: E[∇ composed_loss] = ∇ (true objective), by enumeration.

Vocabulary: <pad> <bos> <eos> <unk> a (5 ids); sample cap 2 sampled tokens. The sampler's
support is then the 3 sequences  <eos> | a <eos> | a a  (the last cut at the cap, with the forced
<eos>). With B = 2 inputs and K = 2 samples each, all 3**4 joint sample tuples are enumerated; the expected gradient of ``composed_loss_from_samples`` under the
sampler's distribution q (computed independently here from f's forward with <pad> <bos> <unk>
masked) is compared with the gradient of the true objective

    J(θ) = −scale · mean_i Σ_ŷ q_θ(ŷ | x_i) log p_Π(y_i | ŷ)  +  λ · NLL_f(y | x)

in float64: equal for baselines ``none`` and ``loo``; ``mean`` gives the score term times (K−1)/K.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from composedft.compose import init_base_predictor
from composedft.sequence import ComposedSequence
from simulations.code import composed as C
from simulations.code import seq2seq_train as T
from simulations.code.decode import EOS, PAD
from simulations.code.model import ModelConfig, Seq2SeqTransformer

A, UNK, BOS, V, CAP, K = 4, 3, 1, 5, 2, 2
SUPPORT = [(EOS,), (A, EOS), (A, A, EOS)]


def _tiny(seed: int, vocab: int = V) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, d_model=8, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=16,
                      dropout=0.0, attn_dropout=0.0, relu_dropout=0.0)
    return Seq2SeqTransformer(cfg).double()


def _setup():
    denoiser = _tiny(0)
    with torch.no_grad():  # make the untrained models prefer the specials: the mask must matter
        denoiser.lm_head.weight.mul_(8.0)
    f = init_base_predictor("random", factory=lambda: _tiny(1))
    model = ComposedSequence(f, denoiser)
    batch = {"src": torch.tensor([[A, A, EOS], [A, EOS, PAD]]), "step": 0,
             "tgt_out": torch.tensor([[A, EOS, PAD], [A, A, EOS]])}
    batch["tgt_in"] = T.teacher_forcing_inputs(batch["tgt_out"])
    return model, batch


def _seq_prob(f, src_row: torch.Tensor, seq: tuple[int, ...]) -> torch.Tensor:
    """q_f(seq | x): f's per-position softmax with <pad> <bos> <unk> masked, multiplied along the
    sampled tokens; the forced <eos> after CAP sampled tokens is not sampled (probability 1)."""
    toks = list(seq[:CAP])
    logits = f(src_row[None], torch.tensor([[BOS] + toks[:-1]]))[0].clone()
    logits[:, [PAD, BOS, UNK]] = -float("inf")
    probs = torch.softmax(logits, -1)
    return torch.stack([probs[t, s] for t, s in enumerate(toks)]).prod()


def _pad(rows):
    w = max(len(r) for r in rows)
    return torch.tensor([list(r) + [PAD] * (w - len(r)) for r in rows])


def _expected_grad(model, batch, obj, params):
    f = model.base_predictor
    f.eval()
    with torch.no_grad():
        q = [[_seq_prob(f, batch["src"][i], s) for s in SUPPORT] for i in range(2)]
    assert all(abs(float(sum(qi)) - 1.0) < 1e-12 for qi in q)  # the support is complete
    total = 0.0
    for combo in itertools.product(range(len(SUPPORT)), repeat=2 * K):  # (i0k0, i0k1, i1k0, i1k1)
        w = q[0][combo[0]] * q[0][combo[1]] * q[1][combo[2]] * q[1][combo[3]]
        loss, _ = C.composed_loss_from_samples(model, batch, _pad([SUPPORT[c] for c in combo]), obj, CAP)
        total = total + w * loss
    return torch.autograd.grad(total, params)


def _true_grad(model, batch, obj, params, score_factor: float):
    f, pi = model.base_predictor, model.denoiser
    f.eval()
    J = 0.0
    for i in range(2):
        tgt = batch["tgt_out"][i:i + 1]
        for s in SUPPORT:  # Π's score of the gold given ŷ, computed here from Π's forward
            lp = torch.log_softmax(pi(torch.tensor([list(s)]), T.teacher_forcing_inputs(tgt)), -1)
            lp = lp[0].gather(-1, tgt[0, :, None])[:, 0]
            r = lp[tgt[0] != PAD].sum() / int((tgt[0] != PAD).sum())
            J = J - obj.scale * score_factor * _seq_prob(f, batch["src"][i], s) * r.detach() / 2
    J = J + obj.lam * T.nll_loss(f, batch)
    return torch.autograd.grad(J, params)


@pytest.mark.parametrize("baseline", ["none", "mean", "loo"])
def test_expected_gradient_equals_true_gradient(baseline):
    model, batch = _setup()
    params = [p for p in model.base_predictor.parameters() if p.requires_grad]
    obj = C.ComposedObjective(k=K, baseline=baseline, lam=0.05, scale=1.3, length_normalize=True, max_len=CAP)
    got = _expected_grad(model, batch, obj, params)
    want = _true_grad(model, batch, obj, params, (K - 1) / K if baseline == "mean" else 1.0)
    num = sum(float((g - w).pow(2).sum()) for g, w in zip(got, want)) ** 0.5
    den = sum(float(w.pow(2).sum()) for w in want) ** 0.5
    assert den > 1e-3 and num <= 1e-10 * den, (baseline, num, den)
    # the score-function part is a sizeable share of it, so the NLL term alone cannot pass this
    score_only = _true_grad(model, batch, C.ComposedObjective(k=K, lam=0.0, max_len=CAP), params, 1.0)
    assert sum(float(w.pow(2).sum()) for w in score_only) ** 0.5 > 0.2 * den


def test_composed_loss_draws_from_the_sampler_it_scores():
    """composed_loss = composed_loss_from_samples on the core sampler's draws for the step's seed."""
    model, batch = _setup()
    obj = C.ComposedObjective(k=K, baseline="loo", lam=0.5, max_len=CAP, seed=7, cap_factor=1.0, cap_margin=0)
    loss, _ = C.composed_loss(model, batch, obj)
    from composedft.seeding import derive_seed, torch_generator
    gen = torch_generator(derive_seed(7, "samples", 0))
    samples = model.sample(batch["src"], K, CAP, generator=gen)
    ref, _ = C.composed_loss_from_samples(model, batch, samples, obj, CAP)
    assert torch.equal(loss, ref)
