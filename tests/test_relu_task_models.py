"""Staircase data, the oracle denoiser, and the batched two-layer ReLU stack vs single models."""
import numpy as np
import pytest
import torch
import torch.nn as nn

from simulations.relu import metrics, models, train
from simulations.relu.task import Staircase, make_task_data, round_to_valid
from theory import norms as theory_norms



@pytest.fixture(autouse=True)
def _float64(float64):
    """Every test here runs in float64 (conftest's fixture restores the default afterwards)."""
    yield


def test_task_shapes_and_ranges():
    st = Staircase(k=6, k_train=4, delta=0.25, L=1.0, h=0.5)
    d = make_task_data(st, 50, 200, 0.0, np.random.default_rng(0))
    assert d.x_train.shape == d.y_train.shape == (50,)
    assert d.x_id.shape == d.x_ood.shape == (200,)
    for x, y, lo_i, hi_i in ((d.x_train, d.y_train, 0, 4), (d.x_id, d.y_id, 0, 4), (d.x_ood, d.y_ood, 4, 6)):
        i = np.round(y / st.h).astype(int)
        assert i.min() >= lo_i and i.max() < hi_i
        # each point lies inside its own interval [i(L+delta), i(L+delta)+L]
        assert np.all(x >= i * st.pitch) and np.all(x <= i * st.pitch + st.L)
        assert np.allclose(st.target(x), y)
    noisy = make_task_data(st, 2000, 10, 0.3, np.random.default_rng(0))
    resid = noisy.y_train - st.target(noisy.x_train)
    assert abs(resid.std() - 0.3) < 0.03


def test_intervals_sit_in_rounding_cells_of_the_linear_map():
    st = Staircase(k=9, k_train=7, delta=0.125)
    x = np.linspace(0, st.L, 11)[None, :] + st.pitch * np.arange(st.k)[:, None]
    assert np.array_equal(round_to_valid(st.linear_map(x), st.h), np.repeat(st.valid_outputs[:, None], 11, 1))


def test_oracle_rounding_denoiser():
    y = np.array([-0.7, -0.2, 0.24, 0.26, 0.74, 1.1, 9.0])
    assert np.allclose(round_to_valid(y, 0.5), [-0.5, -0.0, 0.0, 0.5, 0.5, 1.0, 9.0])
    assert np.allclose(round_to_valid(y, 0.5, k=4), [0.0, 0.0, 0.0, 0.5, 0.5, 1.0, 1.5])
    # idempotent projection onto the valid outputs
    assert np.array_equal(round_to_valid(round_to_valid(y, 0.5, 4), 0.5, 4), round_to_valid(y, 0.5, 4))
    mse, err = metrics.prediction_errors(np.array([0.1, 1.6, 2.0]), np.array([0.0, 1.0, 2.0]), 1.0, 3)
    assert mse == pytest.approx((0.01 + 0.36) / 3) and err == pytest.approx(1 / 3)


def _problem(S=5, m=7, n=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = {k: torch.randn(S, m, generator=g) for k in ("a", "w", "b")}
    p["c"] = torch.randn(S, generator=g)
    den = {k: torch.randn(S, m, generator=g) for k in ("a", "w", "b")}
    den["c"] = torch.randn(S, generator=g)
    x, y = torch.randn(S, n, generator=g) * 3, torch.randn(S, n, generator=g)
    mask = torch.ones(S, n)
    mask[1, 6:] = 0  # a shorter row (padding)
    return p, den, x, y, mask


def _grads(p, batch, wd):
    q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
    data, total = train.objective(q, batch, wd)
    total.sum().backward()
    return data.detach(), total.detach(), {k: v.grad for k, v in q.items()}


def test_batched_equals_loop_of_single_models():
    p, den, x, y, mask = _problem()
    S = x.shape[0]
    std_w = torch.tensor([1.0, 0.0, 0.3, 1.0, 0.0])
    comp_w = torch.tensor([0.0, 1.0, 1.0, 0.0, 2.0])
    batch = train.Batch(x, y, mask, std_w, comp_w, den)
    data, total, grads = _grads(p, batch, 1e-2)
    for s in range(S):
        sl = slice(s, s + 1)
        one = train.Batch(x[sl], y[sl], mask[sl], std_w[sl], comp_w[sl], {k: v[sl] for k, v in den.items()})
        d1, t1, g1 = _grads({k: v[sl] for k, v in p.items()}, one, 1e-2)
        torch.testing.assert_close(models.forward({k: v[sl] for k, v in p.items()}, x[sl]),
                                   models.forward(p, x)[sl], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(total[sl], t1, rtol=1e-13, atol=1e-13)
        for k in g1:
            torch.testing.assert_close(grads[k][sl], g1[k], rtol=1e-12, atol=1e-13)
    # and the trained weights agree after several Adam steps
    pb, _, _ = train.train_stack(p, batch, steps=5, lr=1e-2, weight_decay=1e-2)
    for s in (0, 2):
        sl = slice(s, s + 1)
        one = train.Batch(x[sl], y[sl], mask[sl], std_w[sl], comp_w[sl], {k: v[sl] for k, v in den.items()})
        ps, _, _ = train.train_stack({k: v[sl] for k, v in p.items()}, one, steps=5, lr=1e-2, weight_decay=1e-2)
        for k in ps:
            torch.testing.assert_close(pb[k][sl], ps[k], rtol=1e-12, atol=1e-12)


def test_unbatched_formula_and_padding():
    p, den, x, y, mask = _problem(S=2)
    batch = train.Batch(x, y, mask, torch.tensor([0.5, 0.0]), torch.tensor([1.0, 1.0]), den)
    data, _ = train.objective(p, batch, 0.0)
    # row 1 by hand on its 6 real points: mean (Pi(f(x)) - y)^2
    a, w, b, c = (p[k][1] for k in ("a", "w", "b", "c"))
    f = torch.relu(x[1, :6, None] * w + b) @ a + c
    pi = torch.relu(f[:, None] * den["w"][1] + den["b"][1]) @ den["a"][1] + den["c"][1]
    torch.testing.assert_close(data[1], ((pi - y[1, :6]) ** 2).mean())
    # zero (padded) units stay exactly zero through training
    q = {k: v.clone() for k, v in p.items()}
    for k in ("a", "w", "b"):
        q[k][:, -2:] = 0.0
    out, _, _ = train.train_stack(q, batch, steps=10, lr=1e-2, weight_decay=1e-3)
    assert all(float(out[k][:, -2:].abs().max()) == 0.0 for k in ("a", "w", "b"))


def test_norms_of_a_batch_match_theory_per_model():
    p, *_ = _problem(S=4, m=6)
    got = metrics.stack_norms(p)
    for s in range(4):
        a, w, b, c = models.to_numpy(p, s)
        assert got["weight_norm"][s] == pytest.approx(0.5 * np.sum(a**2 + w**2), rel=1e-12)
        assert got["path_norm"][s] == pytest.approx(np.sum(np.abs(a * w)), rel=1e-12)
        assert got["fn_norm"][s] == pytest.approx(theory_norms.fn_norm_of_net(a, w, b, c), rel=1e-12)
        # independent check of R(f) = max(sum|slope changes|, |f'(-inf) + f'(inf)|) by finite differences
        t = np.sort(-b / w)
        xs = np.concatenate([[t[0] - 1], (t[:-1] + t[1:]) / 2, [t[-1] + 1]])
        f = lambda z: np.maximum(np.outer(z, w) + b, 0) @ a + c  # noqa: E731
        slopes = (f(xs + 1e-6) - f(xs - 1e-6)) / 2e-6
        r = max(np.abs(np.diff(slopes)).sum(), abs(slopes[0] + slopes[-1]))
        assert got["fn_norm"][s] == pytest.approx(r, rel=1e-6)


class _Net(nn.Module):
    def __init__(self, a, w, b, c):
        super().__init__()
        self.a, self.w, self.b = (nn.Parameter(v.clone()) for v in (a, w, b))
        self.c = nn.Parameter(c.clone().reshape(()))

    def forward(self, x):
        return torch.relu(x[:, None] * self.w + self.b) @ self.a + self.c


def test_batched_composed_loss_matches_core_objective():
    objectives = pytest.importorskip("composedft.objectives")
    compose = pytest.importorskip("composedft.compose")
    p, den, x, y, _ = _problem(S=3)
    mask = torch.ones_like(x)
    lam = 0.7
    batch = train.Batch(x, y, mask, torch.full((3,), lam), torch.ones(3), den)
    data, _, grads = _grads(p, batch, 0.0)
    s = 2
    f = _Net(*(p[k][s] for k in ("a", "w", "b", "c")))
    pi = _Net(*(den[k][s] for k in ("a", "w", "b", "c")))
    composed = compose.Composed(f, pi)
    loss = objectives.composed_mse(composed.base_predictor, composed.denoiser, x[s], y[s], lam=lam)
    loss.backward()
    torch.testing.assert_close(data[s], loss.detach(), rtol=1e-12, atol=1e-14)
    for k in ("a", "w", "b", "c"):
        torch.testing.assert_close(grads[k][s], getattr(f, k).grad.reshape(grads[k][s].shape), rtol=1e-11, atol=1e-13)
    assert all(q.grad is None for q in pi.parameters())


def test_knot_grid_denoiser_denoises():
    noisy, clean = train.denoiser_data(5, 1.0, 0.15, 2048, 0)
    den = train.knot_grid_fit(torch.tensor(noisy[None]), torch.tensor(clean[None]), [24], 24,
                              np.array([-0.5]), np.array([4.5]))
    tn, tc = train.denoiser_data(5, 1.0, 0.15, 2048, 1)
    out = models.forward(den, torch.tensor(tn[None]))[0].numpy()
    assert np.mean((out - tc) ** 2) < 0.5 * np.mean((tn - tc) ** 2)  # better than the identity map
    # balanced units: |a_j| = |w_j| (minimal weight norm for the function)
    torch.testing.assert_close(den["a"].abs(), den["w"].abs())
