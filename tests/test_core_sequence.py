"""composedft.sequence: Π∘f for token models (decoding, sampling, scoring), checked independently."""
from __future__ import annotations

import pytest
import torch

from composedft.compose import is_frozen
from composedft.sequence import (SPECIALS, ComposedSequence, as_source, greedy_decode, posthoc_decode, sample,
                                 sampled_logprob, target_logprob)
from simulations.code.model import ModelConfig, Seq2SeqTransformer

PAD, BOS, EOS, UNK = SPECIALS.pad, SPECIALS.bos, SPECIALS.eos, SPECIALS.unk


def _model(seed, vocab=9):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, d_model=16, n_heads=2, n_enc_layers=1, n_dec_layers=2, d_ff=32,
                      dropout=0.3, attn_dropout=0.0, relu_dropout=0.0)
    return Seq2SeqTransformer(cfg).double()


def _src():
    return torch.tensor([[4, 5, 6, EOS], [7, EOS, PAD, PAD], [8, 8, EOS, PAD]])


def _greedy_one_by_one(model, src_row, max_len):
    """Reference greedy decoding: one row at a time, the whole prefix re-run every step."""
    model.eval()
    out = []
    for _ in range(max_len):
        logits = model(src_row[None], torch.tensor([[BOS] + out]))[0, -1].clone()
        logits[[PAD, BOS, UNK]] = -float("inf")  # never part of a decoded program
        out.append(int(logits.argmax()))
        if out[-1] == EOS:
            break
    return out


def test_greedy_with_finished_rows_dropped_matches_row_by_row_decoding():
    model = _model(2, vocab=20)
    with torch.no_grad():  # shift the decoder output towards <eos>: rows finish at steps 0-8 or run on
        w = model.lm_head.weight[EOS]
        model.dec_ln.bias.add_(0.1 * w / w.norm() ** 2)
    src = torch.randint(4, 20, (12, 5), generator=torch.Generator().manual_seed(0))
    src[:, -1] = EOS
    got = greedy_decode(model, src, 12)
    ends = {r.index(EOS) for r in got.tolist() if EOS in r}
    assert len(ends) >= 3  # finished rows were dropped from the batch at several steps
    for i in range(src.size(0)):
        want = _greedy_one_by_one(model, src[i], 12)
        row = got[i].tolist()
        assert row[:len(want)] == want and all(t == PAD for t in row[len(want):])


def test_as_source_appends_eos_only_to_capped_rows():
    y = torch.tensor([[4, EOS, PAD], [5, 6, 7], [EOS, PAD, PAD]])
    assert as_source(y).tolist() == [[4, EOS, PAD, PAD], [5, 6, 7, EOS], [EOS, PAD, PAD, PAD]]
    done = torch.tensor([[4, EOS], [EOS, PAD]])
    assert as_source(done) is done


def test_composed_decode_is_greedy_f_then_greedy_pi_and_pi_stays_frozen():
    f, pi = _model(1), _model(2)
    model = ComposedSequence(f, pi)
    assert is_frozen(pi) and all(p.requires_grad for p in f.parameters())
    model.train()
    assert not pi.training
    src = _src()
    yhat, out = model.decode(src, 6)
    assert torch.equal(yhat, greedy_decode(f, src, 6))
    assert torch.equal(out, greedy_decode(pi, as_source(yhat), 6))
    assert [torch.equal(a, b) for a, b in zip(posthoc_decode(f, pi, src, 6), (yhat, out))] == [True, True]
    with pytest.raises(TypeError, match="no forward"):
        model(src)


@torch.no_grad()
def test_sampled_logprob_is_the_masked_stepwise_probability():
    """log q_f(ŷ|x) from one batched teacher-forced pass (K samples per encoded source) equals the
    sum of step-by-step masked log-softmax values; the forced <eos> of capped rows is not scored."""
    f = _model(3)
    f.eval()
    src = _src()
    s = sample(f, src, 4, 5, generator=torch.Generator().manual_seed(0))
    lp = sampled_logprob(f, src, s, 5)
    for r in range(s.size(0)):
        row, total = s[r].tolist(), 0.0
        prefix = [BOS]
        for t in range(5):
            if row[t] == PAD:
                break
            logits = f(src[r // 4][None], torch.tensor([prefix]))[0, -1].clone()
            logits[[PAD, BOS, UNK]] = -float("inf")
            total += float(torch.log_softmax(logits, -1)[row[t]])
            if row[t] == EOS:
                break
            prefix.append(row[t])
        assert abs(float(lp[r]) - total) < 1e-10


def test_score_is_log_p_pi_of_gold_given_sample():
    f, pi = _model(4), _model(5)
    model = ComposedSequence(f, pi)
    yhat = torch.tensor([[4, 5, EOS], [6, EOS, PAD]])
    gold = torch.tensor([[7, 8, EOS], [4, EOS, PAD]])
    got = model.score(yhat, gold)
    for i in range(2):
        n = int((gold[i] != PAD).sum())
        logits = pi(yhat[i:i + 1], torch.cat([torch.tensor([[BOS]]), gold[i:i + 1, :n - 1]], 1))[0]
        want = sum(float(torch.log_softmax(logits[t], -1)[gold[i, t]]) for t in range(n))
        assert abs(float(got[i]) - want) < 1e-10
    norm = target_logprob(pi, yhat, gold, length_normalize=True)
    assert torch.allclose(norm, got / torch.tensor([3.0, 2.0]))
