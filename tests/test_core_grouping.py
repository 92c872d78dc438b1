"""k-shot neuron grouping (docs/related-methods.md §4).

Identical updates within a group after Adam steps; one group per neuron reduces to plain
fine-tuning bit for bit; one group makes the update of a weight matrix rank <= 1; k-means
recovers well-separated clusters exactly.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from composedft.grouping import group_mean, group_neurons, kmeans

D = torch.float64


def test_kmeans_recovers_separated_clusters_and_is_deterministic():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat([0, 1, 2], 5)
    pts = centers[truth] + 0.1 * rng.standard_normal((15, 2))
    labels = kmeans(pts, 3, seed=1)
    # same partition (up to renaming): co-membership matrices agree
    assert np.array_equal(labels[:, None] == labels[None], truth[:, None] == truth[None])
    assert np.array_equal(labels, kmeans(pts, 3, seed=1))
    with pytest.raises(ValueError, match="n_clusters"):
        kmeans(pts, 0, seed=0)


def test_as_many_groups_as_distinct_neurons_gives_singletons():
    acts = np.random.default_rng(1).standard_normal((7, 5))
    labels = group_neurons(acts, 5, seed=0)
    assert sorted(labels) == [0, 1, 2, 3, 4]
    dead = np.zeros((7, 3))  # identical (all-zero) activations: still singletons when n_groups = m
    assert sorted(group_neurons(dead, 3, seed=0)) == [0, 1, 2]
    assert sorted(set(group_neurons(dead, 2, seed=0))) == [0]  # k-means keeps identical points together
    inactive = group_neurons(acts, 2, seed=0, active=np.array([1, 1, 0, 1, 0], bool))
    assert inactive[2] == -1 and inactive[4] == -1 and set(inactive[[0, 1, 3]]) <= {0, 1}


def test_group_mean_by_hand_and_per_row():
    g = torch.tensor([[1.0, 2.0, 3.0, 10.0], [4.0, 0.0, 8.0, 1.0]], dtype=D)
    labels = torch.tensor([[0, 1, 0, -1], [0, 0, 0, 0]])
    out = group_mean(g, labels)
    assert torch.equal(out, torch.tensor([[2.0, 2.0, 2.0, 10.0], [3.25, 3.25, 3.25, 3.25]], dtype=D))


def _train(labels, steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(12, 3, dtype=D, generator=g)
    y = torch.randn(12, dtype=D, generator=g)
    W = torch.randn(6, 3, dtype=D, generator=g).requires_grad_(True)  # 6 hidden neurons (rows)
    a = torch.randn(6, dtype=D, generator=g).requires_grad_(True)
    W0, a0 = W.detach().clone(), a.detach().clone()
    opt = torch.optim.Adam([W, a], lr=1e-2)
    for _ in range(steps):
        opt.zero_grad()
        ((torch.relu(x @ W.T) @ a - y) ** 2).mean().backward()
        if labels is not None:
            W.grad = group_mean(W.grad.T, labels).T  # neurons along the last dim
            a.grad = group_mean(a.grad, labels)
        opt.step()
    return W.detach() - W0, a.detach() - a0


def test_identical_updates_within_groups_and_rank_one_for_one_group():
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    dW, da = _train(labels)
    for grp in range(3):
        rows = (labels == grp).nonzero().flatten()
        # equal updates; (θ0 + u) - θ0 rounds differently per row, hence ~1 ulp of θ0
        torch.testing.assert_close(dW[rows], dW[rows[:1]].expand(len(rows), 3), rtol=0, atol=1e-15)
        torch.testing.assert_close(da[rows], da[rows[:1]].expand(len(rows)), rtol=0, atol=1e-15)
    dW1, _ = _train(torch.zeros(6, dtype=torch.long))
    s = torch.linalg.svdvals(dW1)
    assert s[0] > 1e-3 and s[1] < 1e-13 * s[0]  # rank one up to rounding


def test_singleton_groups_reduce_to_plain_training():
    dW, da = _train(torch.arange(6))
    dWp, dap = _train(None)
    assert torch.equal(dW, dWp) and torch.equal(da, dap)
