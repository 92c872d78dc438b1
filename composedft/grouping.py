"""k-shot neuron grouping: cluster neurons by activation pattern, share one gradient per group.

Yoo et al. (AAAI 2018), restated in docs/related-methods.md §4. The neurons of a layer are
clustered by their activation vectors on the labeled inputs (k-means; the paper's RL search over
the number of groups is replaced by a grid), and during fine-tuning every neuron of a group gets
the group's mean gradient. With one group per neuron this is plain fine-tuning.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["kmeans", "group_neurons", "group_mean"]


def kmeans(points: np.ndarray, n_clusters: int, seed: int, iters: int = 100) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding; deterministic for a seed. Returns labels 0..n_clusters-1.

    Identical points always share a cluster; with ``n_clusters`` >= the number of distinct
    points every distinct point gets its own cluster (zero within-cluster distance is optimal
    and k-means++ never seeds a duplicate while a distinct point is left).
    """
    pts = np.asarray(points, dtype=float)
    n = len(pts)
    if not 1 <= n_clusters:
        raise ValueError(f"n_clusters must be >= 1, got {n_clusters}")
    n_clusters = min(n_clusters, n)
    rng = np.random.default_rng(seed)
    centers = [pts[rng.integers(n)]]
    for _ in range(1, n_clusters):
        d2 = np.min([((pts - c) ** 2).sum(1) for c in centers], axis=0)
        if d2.sum() == 0:
            break  # fewer distinct points than clusters
        centers.append(pts[rng.choice(n, p=d2 / d2.sum())])
    centers = np.array(centers)
    labels = np.full(n, -1)
    for _ in range(iters):
        new = np.argmin(((pts[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        centers = np.array([pts[labels == c].mean(0) if np.any(labels == c) else centers[c]
                            for c in range(len(centers))])
    _, labels = np.unique(labels, return_inverse=True)  # contiguous 0..G-1
    return labels


def group_neurons(acts: np.ndarray, n_groups: int, seed: int, active: Optional[np.ndarray] = None) -> np.ndarray:
    """Group the m neurons of a layer by their activations ``acts`` [n_inputs, m].

    Neurons outside ``active`` (e.g. padding units) get label -1: they are left alone. With at
    least as many groups as active neurons each neuron is its own group, even where two neurons
    have identical activations (e.g. both dead on the data): the grid's top end is plain fine-tuning.
    """
    acts = np.asarray(acts, float)
    m = acts.shape[1]
    active = np.ones(m, bool) if active is None else np.asarray(active, bool)
    labels = np.full(m, -1)
    idx = np.flatnonzero(active)
    if n_groups >= len(idx):
        labels[idx] = np.arange(len(idx))
    elif len(idx):
        labels[idx] = kmeans(acts[:, idx].T, n_groups, seed)
    return labels


def group_mean(grad: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Replace entries along the last dim by their group's mean (label -1: unchanged).

    ``grad`` [..., m] and ``labels`` [..., m] (broadcast over leading dims of ``grad``); groups are
    taken per leading index, so stacked networks are grouped independently.
    """
    labels = torch.as_tensor(labels).expand_as(grad).long()
    n_groups = int(labels.max()) + 2
    shifted = labels + 1  # -1 -> bin 0 (left alone)
    lead = grad.shape[:-1]
    sums = torch.zeros(*lead, n_groups, dtype=grad.dtype).scatter_add(-1, shifted, grad)
    counts = torch.zeros(*lead, n_groups, dtype=grad.dtype).scatter_add(-1, shifted, torch.ones_like(grad))
    means = sums / counts.clamp_min(1)
    return torch.where(labels >= 0, means.gather(-1, shifted), grad)
