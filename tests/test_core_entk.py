"""eNTK, kernel regression, kernel distance, linearization (docs/related-methods.md §3.6).

Linear-in-parameters model f = θᵀφ(x): eNTK = φφᵀ exactly and its Taylor model is itself.
f(x; θ) = θ² x: the linearization gap is |θ - θ_0| / |θ + θ_0| in closed form.
Ridge -> 0 kernel regression equals the minimum-norm least-squares fit (pseudo-inverse of Φ).
"""
from __future__ import annotations

import pytest
import torch

from _tolerances import TOL
from composedft.entk import entk, jacobian, kernel_distance, kernel_regression, linearization_gap, linearize

D = torch.float64
G = torch.Generator().manual_seed(0)
XS = torch.randn(6, dtype=D, generator=G)


def feats(x: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.ones_like(x), x, torch.sin(3 * x), x ** 2], 1)  # [n, 4]


def linear_model(p, x):
    return feats(x) @ p["theta"]


def test_entk_of_linear_model_is_phi_phi_t():
    p = {"theta": torch.randn(4, dtype=D, generator=G)}
    x2 = torch.randn(3, dtype=D, generator=G)
    torch.testing.assert_close(entk(linear_model, p, XS, x2), feats(XS) @ feats(x2).T, **TOL["same_float64"])
    torch.testing.assert_close(entk(linear_model, p, XS), feats(XS) @ feats(XS).T, **TOL["same_float64"])


def test_jacobian_orders_parameters_by_key_against_hand_derivative():
    p = {"b": torch.tensor(0.5, dtype=D), "a": torch.tensor([2.0, -1.0], dtype=D)}
    fn = lambda q, x: q["a"][0] * x + q["a"][1] * x ** 2 + q["b"] * x ** 3  # noqa: E731
    expected = torch.stack([XS, XS ** 2, XS ** 3], 1)
    torch.testing.assert_close(jacobian(fn, p, XS), expected, **TOL["same_float64"])


def test_kernel_distance_scale_invariant_and_positive_otherwise():
    A = torch.randn(5, 5, dtype=D, generator=G)
    K = A @ A.T
    assert abs(float(kernel_distance(K, 3.7 * K))) < 1e-15
    other = K + torch.diag(torch.arange(5, dtype=D))
    d = float(kernel_distance(K, other))
    assert 0 < d < 1
    assert abs(float(kernel_distance(K, -K)) - 2.0) < 1e-15
    with pytest.raises(ValueError, match="zero kernel"):
        kernel_distance(K, torch.zeros_like(K))


def test_ridgeless_regression_is_min_norm_least_squares():
    x_tr, x_te = XS[:3], torch.randn(4, dtype=D, generator=G)  # 3 points, 4 features: underdetermined
    y = torch.randn(3, dtype=D, generator=G)
    K, Kte = feats(x_tr) @ feats(x_tr).T, feats(x_te) @ feats(x_tr).T
    theta = torch.linalg.pinv(feats(x_tr)) @ y
    torch.testing.assert_close(kernel_regression(K, y, Kte), feats(x_te) @ theta, rtol=1e-9, atol=1e-10)
    # a vanishing ridge tends to the same predictions
    torch.testing.assert_close(kernel_regression(K, y, Kte, ridge=1e-10), feats(x_te) @ theta, rtol=1e-6, atol=1e-7)
    # adjust for init: regress the residual and add f0 back
    f0_tr, f0_te = torch.ones(3, dtype=D), 2 * torch.ones(4, dtype=D)
    out = kernel_regression(K, y, Kte, f0_train=f0_tr, f0_test=f0_te)
    torch.testing.assert_close(out, feats(x_te) @ (torch.linalg.pinv(feats(x_tr)) @ (y - 1)) + 2, rtol=1e-9, atol=1e-10)
    with pytest.raises(ValueError, match="ridge"):
        kernel_regression(K, y, Kte, ridge=-1.0)


def test_linearize_linear_model_is_exact_and_quadratic_gap_closed_form():
    p0 = {"theta": torch.randn(4, dtype=D, generator=G)}
    p1 = {"theta": p0["theta"] + torch.randn(4, dtype=D, generator=G)}
    lin = linearize(linear_model, p0)
    torch.testing.assert_close(lin(p1, XS), linear_model(p1, XS), **TOL["same_float64"])

    quad = lambda q, x: q["t"] ** 2 * x  # noqa: E731
    t0, t1 = torch.tensor(1.5, dtype=D), torch.tensor(2.25, dtype=D)
    f0, f1 = quad({"t": t0}, XS), quad({"t": t1}, XS)
    flin = linearize(quad, {"t": t0})({"t": t1}, XS)
    torch.testing.assert_close(flin, t0 ** 2 * XS + 2 * t0 * XS * (t1 - t0), **TOL["same_float64"])
    gap = linearization_gap(f1, f0, flin)
    torch.testing.assert_close(gap, (t1 - t0).abs() / (t1 + t0).abs(), **TOL["same_float64"])
    with pytest.raises(ValueError, match="did not move"):
        linearization_gap(f0, f0, f0)


def test_linearized_model_gradient_flows_to_params():
    p0 = {"t": torch.tensor(1.0, dtype=D)}
    lin = linearize(lambda q, x: q["t"] ** 3 * x, p0)
    t = torch.tensor(2.0, dtype=D, requires_grad=True)
    lin({"t": t}, XS).sum().backward()
    torch.testing.assert_close(t.grad, 3 * XS.sum(), **TOL["same_float64"])  # d/dt [x + 3x(t-1)]
