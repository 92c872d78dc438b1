"""The fast composed step equals the plain computation (docs/training-speed.md §6).

The plain computation is written out here from the models' forward passes, the way the loss was
computed before the speed-ups: every one of the B·K samples scored by Π and by f, teacher-forced
at the full padded width, then the core estimator. The fast path (distinct samples scored once,
inputs whose K samples coincide skipped, length buckets) must give the same loss and the same
gradient in float64 to 1e-10, for every baseline, with duplicates, a capped sample and one
sequence drawn under two inputs. Also: the inverse-CDF sampler's distribution, the bucketed core
scorers, :func:`distinct_samples`, and samples as a function of (seed, step).
"""
from __future__ import annotations

import pytest
import torch

from _tolerances import TOL
from composedft.estimators import composed_sequence_loss
from composedft.seeding import derive_seed, torch_generator
from composedft.sequence import (ComposedSequence, extent, length_buckets, sample_categorical, sampled_logprob,
                                 target_logprob)
from simulations.code import composed as C
from simulations.code.decode import BOS, EOS, PAD
from simulations.code.model import ModelConfig, Seq2SeqTransformer

UNK, A, B_, V, CAP, K = 3, 4, 5, 6, 3, 4
Z = TOL["mc_z"]


def _tiny(seed: int) -> Seq2SeqTransformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=V, d_model=8, n_heads=2, n_enc_layers=1, n_dec_layers=1, d_ff=16,
                      dropout=0.0, attn_dropout=0.0, relu_dropout=0.0)
    return Seq2SeqTransformer(cfg).double()


def _tf(y: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], 1)


def _rows(rows):
    w = max(len(r) for r in rows)
    return torch.tensor([list(r) + [PAD] * (w - len(r)) for r in rows])


def _setup():
    model = ComposedSequence(_tiny(1), _tiny(0))
    batch = {"src": torch.tensor([[A, B_, EOS], [B_, EOS, PAD], [A, EOS, PAD]]), "step": 0,
             "tgt_out": torch.tensor([[A, EOS, PAD, PAD], [B_, A, B_, EOS], [A, A, EOS, PAD]])}
    batch["tgt_in"] = _tf(batch["tgt_out"])
    samples = _rows([(A, EOS), (A, EOS), (B_, A, B_, EOS), (EOS,),          # input 0: a duplicate
                     (A, B_, EOS), (A, B_, EOS), (A, B_, EOS), (A, B_, EOS),  # input 1: K copies of one
                     (A, EOS), (B_, B_, EOS), (A, A, A, EOS), (EOS,)])        # input 2: (a <eos>) as input 0's; a capped row
    return model, batch, samples


def _plain_loss(model, batch, samples, obj):
    """The plain composed loss: all B·K rows, full width, no sharing (see the module docstring)."""
    f, pi = model.base_predictor, model.denoiser
    B = batch["src"].size(0)
    tgt = batch["tgt_out"].repeat_interleave(K, 0)
    with torch.no_grad():
        lp = torch.log_softmax(pi(samples, _tf(tgt)), -1).gather(-1, tgt[..., None])[..., 0]
        real = tgt != PAD
        reward = (lp * real).sum(1) / (real.sum(1) if obj.length_normalize else 1)
    f.eval()
    toks = samples[:, :CAP]
    logits = f(batch["src"].repeat_interleave(K, 0), _tf(toks)).clone()
    logits[..., [PAD, BOS, UNK]] = -float("inf")
    lq = torch.log_softmax(logits, -1).gather(-1, toks[..., None])[..., 0]
    logq = torch.where(toks != PAD, lq, torch.zeros_like(lq)).sum(1)
    gold = torch.log_softmax(f(batch["src"], batch["tgt_in"]), -1).gather(-1, batch["tgt_out"][..., None])[..., 0]
    nll = -(gold * (batch["tgt_out"] != PAD)).sum() / (batch["tgt_out"] != PAD).sum()
    return composed_sequence_loss(logq.view(B, K), reward.view(B, K), nll, lam=obj.lam, baseline=obj.baseline,
                                  scale=obj.scale)[0]


def _grads(loss, model):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.base_predictor.parameters()))])


@pytest.mark.parametrize("baseline,length_normalize,buckets", [("loo", True, 4), ("loo", False, 1), ("mean", True, 2),
                                                               ("none", True, 3), ("none", False, 12)])
def test_fast_loss_and_gradient_equal_the_plain_computation(baseline, length_normalize, buckets):
    model, batch, samples = _setup()
    obj = C.ComposedObjective(k=K, baseline=baseline, lam=0.4, scale=1.7, length_normalize=length_normalize,
                              max_len=CAP, buckets=buckets)
    loss, stats = C.composed_loss_from_samples(model, batch, samples, obj, CAP)
    want = _plain_loss(model, batch, samples, obj)
    assert abs(float(loss.detach()) - float(want.detach())) <= 1e-10 * abs(float(want.detach()))
    got_g, want_g = _grads(loss, model), _grads(want, model)
    assert float((got_g - want_g).norm()) <= 1e-10 * float(want_g.norm())
    assert stats["distinct"] == 8 / 12  # 12 rows, 8 distinct (input, sequence) pairs
    # the score-function part matters here (λ alone would not pass): it moves the gradient
    lam_only = _grads(_plain_loss(model, batch, samples, C.ComposedObjective(k=K, lam=0.4, scale=0.0,
                                                                                max_len=CAP)), model)
    assert float((lam_only - want_g).norm()) > 1e-3 * float(want_g.norm())


def test_only_the_skipped_input_is_left_out_of_fs_pass(monkeypatch):
    """Under loo, input 1 (K copies of one sequence) is not scored by f; input 0's duplicate once."""
    model, batch, samples = _setup()
    seen = []
    real = model.sample_logprob
    monkeypatch.setattr(model, "sample_logprob", lambda *a, **kw: seen.append(a[1].clone()) or real(*a, **kw))
    C.composed_loss_from_samples(model, batch, samples, C.ComposedObjective(k=K, max_len=CAP), CAP)
    assert len(seen) == 1 and seen[0].size(0) == 7  # 8 distinct rows but input 1's single one
    rows = {tuple(r[r != PAD].tolist()) for r in seen[0]}
    assert (A, B_, EOS) not in rows


def test_distinct_samples_inverts_and_keeps_inputs_apart():
    _, _, samples = _setup()
    first, inverse = C.distinct_samples(samples, K)
    assert torch.equal(samples[first][inverse], samples)
    assert first.numel() == len({(i // K, tuple(r.tolist())) for i, r in enumerate(samples)}) == 8
    assert torch.equal(torch.div(first[inverse], K, rounding_mode="floor"), torch.arange(12) // K)  # own input
    assert inverse[0] == inverse[1] and inverse[0] != inverse[8]  # same sequence, different inputs


def test_bucketed_core_scorers_equal_one_pass():
    model, batch, samples = _setup()
    f, src = model.base_predictor.eval(), batch["src"]
    one = sampled_logprob(f, src, samples, CAP)
    for b in (2, 3, 12):
        torch.testing.assert_close(sampled_logprob(f, src, samples, CAP, buckets=b), one, **TOL["same_float64"])
    idx = torch.tensor([11, 0, 5, 5])
    torch.testing.assert_close(sampled_logprob(f, src, samples[idx], CAP, source_index=idx // K), one[idx],
                               **TOL["same_float64"])
    tgt = batch["tgt_out"].repeat_interleave(K, 0)
    odd = samples.clone()
    odd[2, 1] = PAD  # a pad inside a row (greedy outputs can hold one): trimming must keep the row whole
    for s in (samples, odd):
        full = target_logprob(model.denoiser, s, tgt)
        torch.testing.assert_close(target_logprob(model.denoiser, s, tgt, buckets=4), full, **TOL["same_float64"])
    assert extent(odd, PAD)[2] == 4 and int((odd[2] != PAD).sum()) == 3
    assert sorted(torch.cat(length_buckets(torch.tensor([3, 1, 2, 5, 4]), 2)).tolist()) == [0, 1, 2, 3, 4]


def test_inverse_cdf_sampler_has_the_given_distribution():
    probs = torch.tensor([[0.0, 0.1, 0.0, 0.6, 0.3, 0.0]]).expand(40_000, -1)
    draws = sample_categorical(probs, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=6).double() / draws.numel()
    p = probs[0].double()
    assert bool((freq[p == 0] == 0).all())  # zero-probability columns (first and last too) never drawn
    se = (p * (1 - p) / draws.numel()).sqrt()
    assert bool(((freq - p).abs() <= Z * se + 1e-12).all()), (freq, p)
    again = sample_categorical(probs, generator=torch.Generator().manual_seed(0))
    assert torch.equal(draws, again)


def test_samples_are_a_function_of_seed_and_step():
    model, batch, _ = _setup()
    obj = C.ComposedObjective(k=K, max_len=CAP, seed=3, cap_factor=1.0, cap_margin=0)
    cap = C.sample_cap(batch["tgt_out"], obj)

    def draw(seed, step):
        return model.sample(batch["src"], K, cap, generator=torch_generator(derive_seed(seed, "samples", step)))

    assert torch.equal(draw(3, 5), draw(3, 5))
    assert not torch.equal(draw(3, 5), draw(3, 6)) and not torch.equal(draw(3, 5), draw(4, 5))
    a, _ = C.composed_loss(model, {**batch, "step": 5}, obj)
    b, _ = C.composed_loss(model, {**batch, "step": 5}, obj)
    assert torch.equal(a, b)
    ref = C.composed_loss_from_samples(model, {**batch, "step": 5}, draw(3, 5), obj, cap)[0]
    assert torch.equal(a, ref)


@pytest.mark.slow
@pytest.mark.parametrize("estimator,k", [("ours", 4), ("reference", 1)])
def test_bench_composed_prints_its_ratio(capsys, estimator, k):
    """The benchmark's entry point on its smallest preset (toy, untrained models, one timed step)."""
    import re

    from simulations.code import bench_composed
    assert bench_composed.main(["--repeats", "1", "--clock", "cpu", "--estimator", estimator]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"composed/standard step time: \d+\.\d\dx", lines[-1])
    assert "distinct samples" in lines[1] and "cpu clock" in lines[0] and f"K={k}," in lines[0]
    # untrained samples are (almost surely) distinct: f sees B*K samples + B gold targets
    m = re.search(r"composed (\d+), standard (\d+) \((\d+\.\d\d)x", lines[2])
    assert int(m.group(2)) == 16 and int(m.group(1)) == 16 * k + 16 and m.group(3) == f"{k + 1:.2f}"
