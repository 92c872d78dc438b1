"""Seq2seq Transformer and decoding: cache vs no cache, masks, beam, sampling, length cap."""
from __future__ import annotations

import math

import pytest
import torch

from composedft.sequence import sample as sample_sequences
from simulations.code.decode import BOS, EOS, PAD, beam_search, greedy_decode, max_len_from_data, strip_special
from simulations.code.model import ModelConfig, Seq2SeqTransformer, count_parameters


def _model(seed=0, vocab=40, share=True, dtype=torch.float32, **kw):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, d_model=32, n_heads=4, n_enc_layers=2, n_dec_layers=2, d_ff=64,
                      share_embeddings=share, **kw)
    return Seq2SeqTransformer(cfg).to(dtype).eval()


def _src(B=6, S=10, vocab=40, seed=1):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (B, S), generator=g)
    src[:, -1] = EOS
    if B > 1:
        src[1, 6:] = PAD  # ragged batch: right padding
        src[1, 5] = EOS
    return src


@pytest.mark.parametrize("share", [True, False])
def test_cached_and_uncached_greedy_identical(share):
    model = _model(share=share, dtype=torch.float64)
    src = _src()
    a = greedy_decode(model, src, 25, use_cache=True)
    b = greedy_decode(model, src, 25, use_cache=False)
    assert a.shape == b.shape and torch.equal(a, b)


def test_decode_step_logits_match_teacher_forcing():
    model = _model(dtype=torch.float64)
    src = _src()
    y = torch.randint(4, 40, (src.size(0), 12), generator=torch.Generator().manual_seed(3))
    tgt_in = torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], 1)
    full = model(src, tgt_in)
    cache = model.init_cache(src)
    steps = torch.stack([model.decode_step(tgt_in[:, t], cache) for t in range(tgt_in.size(1))], 1)
    torch.testing.assert_close(steps, full, atol=1e-10, rtol=1e-10)


def test_padding_does_not_change_outputs():
    """Extra right padding on the source must not change the logits (key mask works)."""
    model = _model(dtype=torch.float64)
    src = _src()
    padded = torch.cat([src, torch.full((src.size(0), 7), PAD)], 1)
    tgt_in = torch.full((src.size(0), 1), BOS)
    torch.testing.assert_close(model(src, tgt_in), model(padded, tgt_in), atol=1e-10, rtol=0)
    assert torch.equal(greedy_decode(model, src, 20), greedy_decode(model, padded, 20))


def test_beam_one_equals_greedy_and_beam_not_worse():
    model = _model(dtype=torch.float64)
    src = _src()
    g = greedy_decode(model, src, 15)
    assert torch.equal(beam_search(model, src, 15, beam=1, length_penalty=0.0), g)
    b = beam_search(model, src, 15, beam=4, length_penalty=0.0)

    def seq_logp(y):  # log p(y | x) of a decoded row, up to and including <eos>
        tgt_in = torch.cat([torch.full_like(y[:, :1], BOS), y[:, :-1]], 1)
        lp = torch.log_softmax(model(src, tgt_in), -1).gather(-1, y[..., None])[..., 0]
        return (lp * (y != PAD)).sum(1)

    # with no length penalty, beam search maximises the same score greedy approximates
    assert bool((seq_logp(b) >= seq_logp(g) - 1e-9).all())


def test_sampling_matches_model_distribution():
    """First sampled token frequencies match the masked softmax (chi-square-level tolerance)."""
    model = _model(vocab=12)
    src = _src(B=1, vocab=12)
    k = 4000
    s = sample_sequences(model, src, k, 1, generator=torch.Generator().manual_seed(0))
    cache = model.init_cache(src)
    logits = model.decode_step(torch.tensor([BOS]), cache)[0].double()
    logits[[PAD, BOS, 3]] = -float("inf")  # <pad> <bos> <unk> are never sampled
    p = torch.softmax(logits, -1)
    freq = torch.bincount(s[:, 0], minlength=12).double() / k
    assert freq[PAD] == freq[BOS] == freq[3] == 0
    se = (p * (1 - p) / k).sqrt()
    assert bool(((freq - p).abs() <= 5 * se + 1e-3).all())
    # same generator seed, same samples; the model's train/eval mode is restored
    model.train()
    s2 = sample_sequences(model, src, k, 1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, s2) and model.training


def test_sample_rows_grouped_per_input_and_terminated():
    model = _model()
    src = _src(B=3)
    s = sample_sequences(model, src, 5, 30, generator=torch.Generator().manual_seed(1))
    assert s.shape[0] == 15
    for row in s.tolist():  # after the first <eos> only padding
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])


def test_capped_samples_end_with_eos_and_specials_never_sampled():
    """A sample cut at the cap gets <eos> (Π's input format); no row holds <pad>/<bos>/<unk> before it."""
    model = _model(vocab=12)
    with torch.no_grad():  # make <pad>, <bos>, <unk> and <eos> very likely under the full softmax
        model.lm_head.weight.zero_()
        model.dec_ln.bias.zero_()
    src = _src(B=2, vocab=12)
    s = sample_sequences(model, src, 50, 3, generator=torch.Generator().manual_seed(2))
    assert s.size(1) <= 4
    for row in s.tolist():
        body = row[:row.index(EOS)]
        assert EOS in row and not set(body) & {PAD, BOS, 3}
    assert (s[:, :3] != EOS).all(1).any()  # some rows were capped, and got the forced <eos> at column 3
    assert bool((s[(s[:, :3] != EOS).all(1), 3] == EOS).all())


def test_shared_embeddings_are_one_matrix():
    shared, separate = _model(share=True), _model(share=False)
    assert shared.lm_head.weight is shared.src_embed.weight is shared.tgt_embed.weight
    d, v = 32, 40
    assert count_parameters(separate) - count_parameters(shared) == 2 * v * d


def test_denoiser_weights_initialise_base_predictor():
    """Same architecture and joint vocabulary: f loads Π's state dict exactly."""
    denoiser, f = _model(seed=0), _model(seed=5)
    f.load_state_dict(denoiser.state_dict())
    src = _src()
    assert torch.equal(greedy_decode(f, src, 10), greedy_decode(denoiser, src, 10))


def test_max_len_from_data_never_cuts_gold():
    lengths = [3, 250, 17]
    cap = max_len_from_data(lengths, factor=1.0, margin=0)
    assert cap >= 251  # the longest program plus its <eos>
    assert max_len_from_data(lengths) == math.ceil(1.5 * 251) + 16
    assert strip_special([BOS, 5, 6, EOS, 7, PAD]) == [5, 6]


@pytest.mark.parametrize("with_denoiser", [False, True])
def test_translate_progress_sees_every_program_once(with_denoiser):
    """The progress callback (issue 11 item 4) is told of each source exactly once, batch by batch,
    and reporting does not change the outputs."""
    from simulations.code.seq2seq_train import translate

    model = _model()
    g = torch.Generator().manual_seed(5)
    srcs = [tuple(torch.randint(4, 40, (int(n),), generator=g).tolist()) + (EOS,) for n in torch.randint(2, 9, (11,), generator=g)]
    seen: list[int] = []
    kw = {"batch_size": 4, "amp": False, "denoiser": _model(seed=1) if with_denoiser else None}
    got = translate(model, srcs, 12, progress=seen.append, **kw)
    assert seen == [4, 4, 3] and sum(seen) == len(srcs)
    assert got == translate(model, srcs, 12, **kw)


class _PrefersSpecials(torch.nn.Module):
    """``model`` with +100 added to the <pad>, <bos> and <unk> logits at every step."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def _push(self, logits):
        logits = logits.clone()
        logits[..., [PAD, BOS, 3]] += 100.0
        return logits

    def encode(self, *a):
        return self.m.encode(*a)

    def cache_from_memory(self, *a):
        return self.m.cache_from_memory(*a)

    def init_cache(self, *a):
        return self.m.init_cache(*a)

    def decode_step(self, *a):
        return self._push(self.m.decode_step(*a))

    def decode(self, *a):
        return self._push(self.m.decode(*a))


@pytest.mark.parametrize("decode", ["greedy", "greedy-nocache", "beam"])
def test_decoding_never_emits_pad_bos_or_unk(decode):
    # Masked, those columns cannot win whatever their logits: the output is the model's own.
    model = _model(dtype=torch.float64)
    src = _src()
    run = {"greedy": lambda m: greedy_decode(m, src, 15),
           "greedy-nocache": lambda m: greedy_decode(m, src, 15, use_cache=False),
           "beam": lambda m: beam_search(m, src, 15, beam=3)}[decode]
    pushed = run(_PrefersSpecials(model))
    assert torch.equal(pushed, run(model))
    for row in pushed.tolist():
        row = row[:row.index(EOS)] if EOS in row else row
        assert not {PAD, BOS, 3} & set(row)
