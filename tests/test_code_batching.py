"""Length-bucketed batches (docs/training-speed.md §1): every example once per epoch, a pure
function of (seed, step), less padding, and the DDP slicing of ``stages.batch_fn_for``."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from composedft.seeding import derive_seed
from simulations.code import seq2seq_train as T
from simulations.code import stages

CASES = [(10, 3, 1), (10, 3, 2), (12, 4, 1), (12, 4, 100), (7, 10, 3), (37, 5, 2), (1, 1, 1), (64, 8, 3)]


def _lengths(n: int, seed: int = 1) -> list[int]:
    return [int(v) for v in np.random.default_rng(seed).integers(1, 40, n)]


def _stream(sampler: T.BatchSampler, steps: int) -> list[int]:
    return [i for s in range(steps) for i in sampler(s)]


@pytest.mark.parametrize("n,batch,window", CASES)
def test_every_example_exactly_once_per_epoch(n, batch, window):
    sampler = T.BatchSampler(n, batch, seed=3, lengths=_lengths(n), window=window)
    epochs = 4
    steps = -(-epochs * n // batch)
    flat = _stream(sampler, steps)
    for e in range(epochs):
        assert sorted(flat[e * n:(e + 1) * n]) == list(range(n)), f"epoch {e}"
    assert all(len(sampler(s)) == batch for s in range(steps))


@pytest.mark.parametrize("n,batch,window", CASES)
def test_a_batch_is_a_function_of_seed_and_step(n, batch, window):
    lengths = _lengths(n)
    steps = -(-5 * n // batch)
    sequential = [T.BatchSampler(n, batch, 7, lengths, window)(s) for s in range(steps)]
    shuffled = T.BatchSampler(n, batch, 7, lengths, window)  # one instance, steps out of order
    order = np.random.default_rng(0).permutation(steps)
    assert {int(s): shuffled(int(s)) for s in order} == dict(enumerate(sequential))
    resumed = T.BatchSampler(n, batch, 7, lengths, window)  # a fresh sampler "after a restart"
    assert [resumed(s) for s in range(steps // 2, steps)] == sequential[steps // 2:]


def test_other_seeds_give_other_batches():
    lengths = _lengths(64)
    a = _stream(T.BatchSampler(64, 8, 0, lengths), 16)
    b = _stream(T.BatchSampler(64, 8, 1, lengths), 16)
    assert a != b and sorted(a) == sorted(b)


def test_without_lengths_the_epoch_is_the_seeded_permutation():
    """The old (unbucketed) sampler, recomputed independently from its definition."""
    n, batch, seed = 10, 4, 5
    perms = [np.random.default_rng(derive_seed(seed, "epoch", e)).permutation(n) for e in range(4)]
    expected = [int(i) for p in perms for i in p]
    assert _stream(T.BatchSampler(n, batch, seed), 10) == expected


def test_one_window_groups_consecutive_lengths():
    """n a multiple of B and one window over the epoch: each batch is B consecutive ranks of
    the sorted lengths (closed form), and the padded width of the epoch is the sum of every
    B-th sorted length, the minimum over all partitions into batches of B."""
    n, batch = 48, 6
    lengths = np.random.default_rng(2).permutation(np.arange(100, 100 + n))  # distinct lengths
    sampler = T.BatchSampler(n, batch, seed=4, lengths=lengths.tolist(), window=n // batch)
    rank = np.argsort(np.argsort(lengths))
    for e in range(3):
        groups = sorted(sorted(int(rank[i]) for i in sampler(e * n // batch + k)) for k in range(n // batch))
        assert groups == [list(range(k * batch, (k + 1) * batch)) for k in range(n // batch)]
    width = sum(max(lengths[i] for i in sampler(k)) for k in range(n // batch))
    assert width == sum(np.sort(lengths)[batch - 1::batch])


def test_batch_order_is_shuffled_not_sorted():
    """Sorting alone would feed the lengths in increasing order; the batch order is shuffled
    per epoch (the exact order is the seeded permutation of the sorted batches)."""
    n, batch, seed = 48, 6, 4
    lengths = np.arange(100, 100 + n)  # sorted, the epoch is 0..n-1 and batch k is kB..kB+B-1
    sampler = T.BatchSampler(n, batch, seed, lengths.tolist(), window=n // batch)
    order = np.random.default_rng(derive_seed(seed, "batch-order", 0)).permutation(n // batch)
    assert [min(sampler(k)) // batch for k in range(n // batch)] == order.tolist()


def test_windows_limit_the_sort():
    """With a window of one batch, bucketing sorts inside each batch only: the batches hold
    the same examples as the unbucketed sampler's, permuted in order (n a multiple of B)."""
    n, batch, seed = 24, 4, 9
    lengths = _lengths(n)
    plain, bucketed = T.BatchSampler(n, batch, seed), T.BatchSampler(n, batch, seed, lengths, window=1)
    for e in range(2):
        steps = range(e * n // batch, (e + 1) * n // batch)
        assert sorted(sorted(plain(s)) for s in steps) == sorted(sorted(bucketed(s)) for s in steps)


def test_bucketing_reduces_padding_on_sanstype_like_lengths():
    n, batch = 1000, 32
    lengths = np.random.default_rng(0).integers(50, 290, n).tolist()  # src+tgt tokens of SANSTYPE
    steps = n // batch

    def padded(sampler):
        return sum(batch * max(lengths[i] for i in sampler(s)) for s in range(steps))

    plain, bucketed = padded(T.BatchSampler(n, batch, 0)), padded(T.BatchSampler(n, batch, 0, lengths))
    assert bucketed < 0.75 * plain  # uniform lengths: random batches pad to ~the max, sorted ones don't


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="empty corpus"):
        T.BatchSampler(0, 4, 0)
    with pytest.raises(ValueError, match="3 lengths for a corpus of 4"):
        T.BatchSampler(4, 2, 0, lengths=[1, 2, 3])
    with pytest.raises(ValueError, match="window=0"):
        T.BatchSampler(4, 2, 0, lengths=[1, 2, 3, 4], window=0)


def test_corpus_lengths_count_source_target_and_eos():
    corpus = T.Corpus(src=((5, 6, 2), (7, 2)), tgt=((8,), (9, 10, 11)))
    assert T.corpus_lengths(corpus) == [3 + 1 + 1, 2 + 3 + 1]


@pytest.mark.parametrize("world", [1, 2, 3])
def test_ranks_split_the_global_batch_and_share_its_normaliser(world):
    rng = np.random.default_rng(0)
    corpus = T.Corpus(src=tuple(tuple(rng.integers(4, 20, rng.integers(1, 9))) + (2,) for _ in range(20)),
                      tgt=tuple(tuple(rng.integers(4, 20, rng.integers(1, 9))) for _ in range(20)))
    batch = 6
    glob = T.BatchSampler(20, batch, 11, T.corpus_lengths(corpus))
    for step in range(7):
        idx, rows, norms = glob(step), 0, set()
        for rank in range(world):
            ctx = SimpleNamespace(dist=SimpleNamespace(world=world, rank=rank), device=torch.device("cpu"))
            b = stages.batch_fn_for(ctx, corpus, batch, 11)(step)
            expected = T.make_batch(corpus, idx[rank::world])
            assert all(torch.equal(b[k], expected[k]) for k in ("src", "tgt_in", "tgt_out"))
            rows += b["src"].size(0)
            norms.add(b["norm"])
        assert rows == batch
        assert norms == {sum(len(corpus.tgt[i]) + 1 for i in idx) / world}


def test_sorted_blocks_stay_aligned_when_batches_straddle_epochs():
    """n not a multiple of B: epoch e starts (-e*n) mod B positions before a batch boundary.
    The sort must be aligned with the boundaries, so every batch inside the epoch is still a
    block of consecutive lengths (only the batches straddling two epochs mix lengths)."""
    n, batch = 50, 6
    lengths = np.random.default_rng(3).permutation(np.arange(200, 200 + n))
    sampler = T.BatchSampler(n, batch, seed=2, lengths=lengths.tolist(), window=100)
    for e in range(1, 4):
        first = -(-e * n // batch)  # first step starting inside epoch e
        inside = [sampler(s) for s in range(first, ((e + 1) * n) // batch)]
        members = sorted((i for b in inside for i in b), key=lambda i: lengths[i])
        blocks = [set(members[k * batch:(k + 1) * batch]) for k in range(len(inside))]
        assert sorted(map(sorted, blocks)) == sorted(map(sorted, inside)), f"epoch {e}"


# ---- the throughput benchmark (simulations.code.bench_train) -------------------------------------

def test_padding_fraction_closed_form():
    corpus = T.Corpus(src=((4, 2), (4, 4, 4, 2)), tgt=((5,), (5, 5, 5, 5, 5)))  # src 2,4; tgt+eos 2,6
    from simulations.code.bench_train import padding_fraction
    sampler = T.BatchSampler(2, 2, 0)
    assert padding_fraction(corpus, sampler, 1) == pytest.approx(1 - (2 + 4 + 2 + 6) / (2 * (4 + 6)))


def test_torch_transformer_twin_is_causal_pad_blind_and_the_same_size():
    from simulations.code.bench_train import TorchTransformer
    from simulations.code.model import ModelConfig, Seq2SeqTransformer, count_parameters
    cfg = ModelConfig(vocab_size=30, d_model=16, n_heads=2, n_enc_layers=2, n_dec_layers=2, d_ff=32, dropout=0.0,
                      attn_dropout=0.0, relu_dropout=0.0)
    torch.manual_seed(0)
    twin = TorchTransformer(cfg).eval()
    assert count_parameters(twin) == count_parameters(Seq2SeqTransformer(cfg))
    src = torch.tensor([[5, 6, 7, 2, 0, 0], [8, 9, 10, 11, 12, 2]])
    tgt = torch.tensor([[1, 13, 14, 15], [1, 16, 17, 18]])
    with torch.no_grad():
        base = twin(src, tgt)
        later = tgt.clone()
        later[:, 2:] = 19  # change the future: positions 0 and 1 must not move
        torch.testing.assert_close(twin(src, later)[:, :2], base[:, :2])
        assert not torch.allclose(twin(src, later)[:, 2:], base[:, 2:])
        torch.testing.assert_close(twin(src[:1, :4], tgt[:1]), base[:1])  # the padding is invisible


def test_bench_train_prints_its_ratios(capsys):
    from simulations.code import bench_train
    r = bench_train.main(["--n", "40", "--rounds", "1", "--steps", "1", "--warmup", "1", "--threads", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("ours / torch.nn.Transformer: ") and lines[-2].endswith("x")
    assert lines[-1].startswith("ours / plain loop (random batches, 1 thread): ")
    assert [c.timed_steps for c in r["contenders"]] == [1, 1, 1]
    assert r["contenders"][0].step == r["contenders"][1].step == 2  # warm-up + timed, same batches count


@pytest.mark.parametrize("window", [0, 2, 100])
def test_fine_tuning_window_selects_the_sampler(window):
    """``bucket_window`` (CodeConfig): 0 draws the uniformly random batches of the unbucketed
    sampler; w > 0 the length-sorted windows of w batches, computed independently here."""
    rng = np.random.default_rng(1)
    corpus = T.Corpus(src=tuple(tuple(rng.integers(4, 20, rng.integers(1, 9))) + (2,) for _ in range(40)),
                      tgt=tuple(tuple(rng.integers(4, 20, rng.integers(1, 30))) for _ in range(40)))
    ctx = SimpleNamespace(dist=SimpleNamespace(world=1, rank=0), device=torch.device("cpu"))
    ref = (T.BatchSampler(40, 4, 5) if window == 0 else
           T.BatchSampler(40, 4, 5, T.corpus_lengths(corpus), window=window))
    fn = stages.batch_fn_for(ctx, corpus, 4, 5, window=window)
    for step in range(25):  # 2.5 epochs
        assert torch.equal(fn(step)["src"], T.make_batch(corpus, ref(step))["src"])
    if window == 2:  # small windows re-group: epoch 0 and epoch 1 do not hold the same batches
        groups = [{frozenset(ref(s)) for s in range(e * 10, e * 10 + 10)} for e in (0, 1)]
        assert groups[0] != groups[1]


def test_bucket_window_is_a_fine_tuning_field():
    from simulations.code.config import PRESETS, finetuning_only

    assert finetuning_only("bucket_window")  # Π always uses 100: a seed may change it and share Π
    assert PRESETS["toy"].bucket_window == 100  # the toy's batches are unchanged
