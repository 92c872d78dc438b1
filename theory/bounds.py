"""Generalization: the Rademacher bound for norm-bounded two-layer ReLU networks.

For F_B = { x -> sum_j a_j relu(w_j x + b_j) : sum_j |a_j| ||(w_j, b_j)||_2 <= B } and inputs with
||(x, 1)||_2 <= R_x, the empirical Rademacher complexity on n points is at most 2 B R_x / sqrt(n)
(Neyshabur, Tomioka & Srebro 2015; relu is 1-Lipschitz and positively homogeneous, so F_B is B times
the symmetric convex hull of single units, and the contraction lemma gives the factor 2). Free
biases are folded in by centring the input domain: on [-rho, rho] a unit with its knot inside
costs ||(w, b)|| <= |w| sqrt(1 + rho^2), so B <= sqrt(1 + rho^2) R(f) after moving the knots of the
minimal representation into the domain (knots outside only add linear pieces).

For equal bounds, the number of labels scales as B^2: n_standard / n_composed = (B_std / B_comp)^2.
The denoiser is fixed (trained on unlabeled outputs only) so it adds no labeled-sample term.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["rademacher_bound", "labels_ratio", "empirical_rademacher_mc"]


def rademacher_bound(B: float, R_x: float, n: int) -> float:
    """2 B R_x / sqrt(n)."""
    if n <= 0:
        raise ValueError("rademacher_bound: n must be positive")
    return 2.0 * B * R_x / math.sqrt(n)


def labels_ratio(B_standard: float, B_composed: float) -> float:
    """Labels the standard predictor needs per label of the composed one, for equal bounds."""
    return (B_standard / B_composed) ** 2


def empirical_rademacher_mc(x: np.ndarray, draws: int = 2000, seed: int = 0, n_dirs: int = 2048) -> float:
    """Monte Carlo E_sigma sup_{||(w,b)||=1} |(1/n) sum_i sigma_i relu(w x_i + b)| (the B = 1 ball).

    The sup of a linear functional over the ball is attained at a single unit; the unit circle of
    (w, b) is scanned on a fine grid (n_dirs angles), which can only under-estimate the sup.
    """
    x = np.asarray(x, np.float64)
    ang = np.linspace(0, 2 * np.pi, n_dirs, endpoint=False)
    feats = np.maximum(np.outer(x, np.cos(ang)) + np.sin(ang)[None, :], 0.0)  # [n, dirs]
    sig = np.random.default_rng(seed).choice([-1.0, 1.0], size=(draws, x.size))
    return float(np.mean(np.max(np.abs(sig @ feats), axis=1)) / x.size)
