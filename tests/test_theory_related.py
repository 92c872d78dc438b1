"""theory/related.py: hand cases of the related-method checks, and the records pass in run_checks."""
from __future__ import annotations

import math

import numpy as np
import pytest

from theory import staircase as sc
from theory.checks import _rec, _worst_rec
from theory.related import (fixed_knot_staircase_lp, fixed_knot_staircase_min_norm, related_checks,
                            smart_worst_case, smart_worst_case_by_ascent)


def test_smart_worst_case_hand_net():
    # f = 3 relu(x) - 5 relu(x - 1): slopes 0, 3, -2; pieces of length 1 (and the tails)
    a, w, b = np.array([3.0, -5.0]), np.array([1.0, 1.0]), np.array([0.0, -1.0])
    val, shortest = smart_worst_case_by_ascent(a, w, b, 0.0, eps=0.01)
    assert shortest == 1.0
    assert math.isclose(val, 0.01 ** 2 * 9, rel_tol=1e-12)
    assert smart_worst_case(np.array([0.0, 3.0, -2.0]), 0.01) == pytest.approx(9e-4, rel=1e-12)


def test_fixed_knots_at_the_gap_ends_give_the_free_minimum_and_inner_knots_cost_more():
    k, h, d, L = 3, 1.0, 0.5, 1.0
    iv = sc.intervals(k, d, L)
    ends = np.array([iv[0, 1], iv[1, 0], iv[1, 1], iv[2, 0]])
    free = sc.standard_min_norm(k, h, d, L)
    assert fixed_knot_staircase_min_norm(k, h, d, L, ends) == pytest.approx(free, rel=1e-12)
    assert fixed_knot_staircase_lp(k, h, d, L, ends) == pytest.approx(free, rel=1e-9)
    inner = np.array([iv[0, 1] + 0.1, iv[0, 1] + 0.3, iv[1, 1] + 0.05, iv[1, 1] + 0.45])
    assert fixed_knot_staircase_min_norm(k, h, d, L, inner) == pytest.approx(2 / 0.2 + 2 / 0.4, rel=1e-12)
    assert fixed_knot_staircase_lp(k, h, d, L, inner) == pytest.approx(2 / 0.2 + 2 / 0.4, rel=1e-9)
    single = inner[1:]  # one knot left in the first gap
    assert math.isinf(fixed_knot_staircase_min_norm(k, h, d, L, single))
    assert math.isinf(fixed_knot_staircase_lp(k, h, d, L, single))
    with pytest.raises(ValueError, match="gap"):
        fixed_knot_staircase_min_norm(k, h, d, L, np.append(ends, 0.5))  # a knot inside interval 0


def test_related_records_pass():
    recs = related_checks(np.random.default_rng(3), True, _rec, _worst_rec)
    assert [r["name"] for r in recs] == ["smart_worst_case_1d", "linearized_fixed_knots", "radreg_orthonormal"]
    assert all(r["passed"] for r in recs)
    assert all(r["rel_err"] is not None and r["rel_err"] < 1e-9 for r in recs)
