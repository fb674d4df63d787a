"""Betting tests and bounds of a bounded mean: exact arithmetic, validity, errors."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from processors.gates import betting


def test_the_capital_is_the_average_bettor_product_whatever_the_order() -> None:
    values = [1.0, 5.0, 3.0, 4.0, 4.0, 2.0]
    m, lo = 3.2, 1.0
    products = [math.prod(1 + f * (x - m) / (m - lo) for x in values) for f in betting.FRACTIONS]
    expected = math.log(sum(products) / len(products))
    got = betting.log_capital(Counter(values), m, lo=lo, hi=5.0, side="above")
    assert got == pytest.approx(expected, rel=1e-12)
    mirrored = betting.log_capital(Counter(values), 6 - m, lo=lo, hi=5.0, side="below")
    assert betting.log_capital(Counter(6 - x for x in values), m, lo=1, hi=5, side="above") == (
        pytest.approx(mirrored, rel=1e-12)
    )


def test_the_bounds_hold_at_every_sample_size_while_the_mean_drifts() -> None:
    # judge scores whose mean swings over the "day" between 3.6 and 4.4: the running
    # average of the conditional means is what the bounds cover, at every look at once
    rng = np.random.default_rng(11)
    alpha, sequences, n, missed = 0.1, 100, 2_000, 0
    for _ in range(sequences):
        t = np.arange(n)
        p_high = 0.5 + 0.2 * np.sin(2 * math.pi * t / 500)  # P(5) vs P(3): mean 3.6..4.4
        values = np.where(rng.random(n) < p_high, 5.0, 3.0)
        truth = np.cumsum(3 + 2 * p_high) / (t + 1)
        for look in range(200, n + 1, 200):
            hist = Counter(values[:look].tolist())
            low = betting.bound(hist, alpha / 2, lo=1, hi=5, side="above")
            high = betting.bound(hist, alpha / 2, lo=1, hi=5, side="below")
            if not low <= truth[look - 1] <= high:
                missed += 1
                break
    assert missed / sequences <= alpha


def test_more_data_at_the_same_mean_narrows_the_bounds() -> None:
    small = {4.0: 60, 5.0: 40}
    large = {4.0: 600, 5.0: 400}
    for side in ("above", "below"):
        a = betting.bound(small, 0.01, lo=1, hi=5, side=side)  # type: ignore[arg-type]
        b = betting.bound(large, 0.01, lo=1, hi=5, side=side)  # type: ignore[arg-type]
        assert abs(b - 4.4) < abs(a - 4.4)
    assert betting.bound({}, 0.01, lo=1, hi=5, side="above") == 1
    assert betting.bound({}, 0.01, lo=1, hi=5, side="below") == 5


def test_a_test_rejects_exactly_where_the_bound_lies() -> None:
    hist = {0.0: 9_800, 1.0: 150, -1.1: 40, -0.1: 10}
    low = betting.bound(hist, 0.01, lo=-1.1, hi=1, side="above")
    assert betting.rejects(hist, low - 1e-4, 0.01, lo=-1.1, hi=1, side="above")
    assert not betting.rejects(hist, low + 1e-4, 0.01, lo=-1.1, hi=1, side="above")


def test_bad_input_is_refused_naming_what_is_wrong() -> None:
    with pytest.raises(ValueError, match=r"value 7.0 lies outside the range \[1, 5\]"):
        betting.bound({7.0: 1}, 0.05, lo=1, hi=5, side="above")
    with pytest.raises(ValueError, match="counts must be >= 0"):
        betting.rejects({3.0: -1}, 3.0, 0.05, lo=1, hi=5, side="above")
    with pytest.raises(ValueError, match="alpha must be in"):
        betting.bound({3.0: 1}, 1.5, lo=1, hi=5, side="above")
    with pytest.raises(ValueError, match="value range must be finite"):
        betting.bound({3.0: 1}, 0.05, lo=5, hi=1, side="above")


def test_binning_rounds_toward_the_safe_side() -> None:
    hist = {1.004: 1, 4.999: 2}
    down = betting.binned(hist, lo=1, hi=5, bins=400, side="above")
    up = betting.binned(hist, lo=1, hi=5, bins=400, side="below")
    assert sorted(down.items()) == [(1.0, 1), (pytest.approx(4.99), 2)]
    assert sorted(up.items()) == [(pytest.approx(1.01), 1), (5.0, 2)]
