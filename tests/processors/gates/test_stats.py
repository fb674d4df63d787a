"""Anytime-valid intervals: closed forms, brute-force references and Monte Carlo coverage.

The coverage tests draw whole sample paths with a fixed seed and count the paths on which an
interval *ever* misses the truth (the event a time-uniform guarantee bounds by ``alpha``).
Their slack: with 400 paths the Monte Carlo standard error of a rate near 0.05 is about
0.011, and the bound allowed is ``alpha + 0.025`` (over two standard errors). The slack is
needed: a mixture martingale crosses ``1 / alpha`` with little overshoot, so Ville's bound
is nearly tight and over a long horizon the miss rates approach ``alpha`` (with 4,000 paths
of 5,000 steps: about 0.04 for mean_cs on Bernoulli(0.3), 0.03 for proportion_cs at 0.5).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.special import betaln, xlog1py, xlogy

from processors.gates.stats import (
    Direction,
    Interval,
    Outcome,
    decide,
    difference_interval,
    mean_cs,
    mixture_rho2,
    normal_mixture_halfwidth,
    proportion_cs,
    quantile_cs,
    quantile_rank_bounds,
    ratio_interval,
    split_alpha,
)

ALPHA = 0.05
T_STAR = 1000.0
PATHS = 400
SLACK = 0.025  # Monte Carlo allowance on top of alpha, see the module docstring


def _log_term(alpha: float) -> float:
    return -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))


def _halfwidth(n: int, alpha: float, t_star: float) -> float:
    rho2 = _log_term(alpha) / t_star
    return math.sqrt(2 * (n * rho2 + 1) / (n**2 * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))


def _proportion_log_m(n: np.ndarray, k: np.ndarray, p: float | np.ndarray) -> np.ndarray:
    """Reference ln M_n(p): prior half Beta(1/2, 1/2), half Beta(a, a), a from t_star."""
    a = max(0.5, (T_STAR / _log_term(ALPHA) - 1) / 2)
    parts = [np.log(0.5) + betaln(c + k, c + n - k) - betaln(c, c) for c in (0.5, a)]
    log_mix = np.logaddexp(*parts)
    return np.asarray(log_mix - xlogy(k, p) - xlog1py(n - k, -p))


def _quantile_log_m(n: int, k: np.ndarray, q: float, alpha: float, t_star: float) -> np.ndarray:
    """Reference ln M_n(q; k): prior Beta(c q, c (1 - q)), c = max(1, t_star / L - 1)."""
    c = max(1.0, t_star / _log_term(alpha) - 1)
    a, b = c * q, c * (1 - q)
    return np.asarray(betaln(a + k, b + n - k) - betaln(a, b) - xlogy(k, q) - xlog1py(n - k, -q))


# --- the normal mixture -------------------------------------------------------------------


def test_mixture_rho2_is_the_published_tuning() -> None:
    assert mixture_rho2(0.05, 1000) == pytest.approx(
        (-2 * math.log(0.05) + math.log(-2 * math.log(0.05) + 1)) / 1000, rel=1e-14
    )


@pytest.mark.parametrize("alpha", [0.2, 0.05, 0.003, 1e-6])
@pytest.mark.parametrize("t_star", [10.0, 1000.0, 50_000.0])
@pytest.mark.parametrize("n", [1, 7, 100, 1000, 123_456])
def test_halfwidth_matches_closed_form(n: int, alpha: float, t_star: float) -> None:
    assert normal_mixture_halfwidth(n, alpha, t_star) == pytest.approx(
        _halfwidth(n, alpha, t_star), rel=1e-12
    )


@pytest.mark.parametrize(("alpha", "t_star"), [(0.05, 1000.0), (0.003, 5000.0), (0.3, 20.0)])
def test_halfwidth_decreases_and_is_wider_than_fixed_n(alpha: float, t_star: float) -> None:
    ns = np.unique(np.geomspace(1, 1000 * t_star, 3000).astype(int))
    widths = np.array([normal_mixture_halfwidth(int(n), alpha, t_star) for n in ns])
    assert np.all(np.diff(widths) < 0)  # at every n, not only past t_star / 10
    fixed = sps.norm.ppf(1 - alpha / 2) / np.sqrt(ns)
    assert np.all(widths > fixed)
    at_t_star = normal_mixture_halfwidth(int(t_star), alpha, t_star)
    assert at_t_star < 3 * sps.norm.ppf(1 - alpha / 2) / math.sqrt(t_star)


# --- mean_cs ------------------------------------------------------------------------------


def _mean_paths(x: np.ndarray, value_range: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Per path and step: (n, sum, sum of squares, the CS's |mean - mu| scale, half-width)."""
    lo, hi = value_range
    n = np.arange(1, x.shape[1] + 1)
    total, total_sq = np.cumsum(x, axis=1), np.cumsum(x * x, axis=1)
    mean = total / n
    squares = np.maximum(total_sq - total * mean, 0.0)
    sigma = np.sqrt(((hi - lo) ** 2 / 4 + squares) / (n + 1))
    h = np.array([normal_mixture_halfwidth(int(i), ALPHA, T_STAR) for i in n])
    return n, total, total_sq, mean, sigma * h


def _assert_mean_coverage(x: np.ndarray, mu: float, value_range: tuple[float, float]) -> float:
    n, total, total_sq, mean, half = _mean_paths(x, value_range)
    # The vectorised form above is mean_cs itself, step by step (checked on a few paths)...
    for path in range(5):
        for i in range(0, x.shape[1], 7):
            cs = mean_cs(
                int(n[i]), total[path, i], total_sq[path, i], ALPHA, value_range=value_range
            )
            lo, hi = value_range
            assert cs.low == pytest.approx(max(mean[path, i] - half[path, i], lo), abs=1e-9)
            assert cs.high == pytest.approx(min(mean[path, i] + half[path, i], hi), abs=1e-9)
    # ...so a path's CS ever misses mu iff mean_cs misses it where |mean - mu| / half peaks.
    worst = np.argmax(np.abs(mean - mu) / half, axis=1)
    missed = [
        not mean_cs(
            int(n[i]), total[path, i], total_sq[path, i], ALPHA, value_range=value_range
        ).contains(mu)
        for path, i in enumerate(worst)
    ]
    rate = float(np.mean(missed))
    assert rate <= ALPHA + SLACK
    # The same paths with a fixed-n 95% interval looked at on every step (n >= 30) miss far
    # more often than alpha: the check above can tell a non-anytime-valid interval.
    sd = np.sqrt(np.maximum(total_sq - total * mean, 0.0) / np.maximum(n - 1, 1))
    fixed_half = sps.norm.ppf(1 - ALPHA / 2) * sd / np.sqrt(n)
    naive = np.any((np.abs(mean - mu) > fixed_half)[:, 29:], axis=1)
    assert float(np.mean(naive)) > 3 * ALPHA
    return rate


def test_mean_cs_time_uniform_coverage_bernoulli() -> None:
    rng = np.random.default_rng(20261126)
    x = (rng.random((PATHS, 5000)) < 0.3).astype(float)
    _assert_mean_coverage(x, 0.3, (0.0, 1.0))


def test_mean_cs_time_uniform_coverage_skewed() -> None:
    rng = np.random.default_rng(7)
    x = rng.beta(2, 8, size=(PATHS, 5000)) * 4 + 1  # on [1, 5], mean 1.8, right-skewed
    _assert_mean_coverage(x, 1.8, (1.0, 5.0))


def test_mean_cs_edges() -> None:
    assert mean_cs(0, 0.0, 0.0, ALPHA, value_range=(1.0, 5.0)) == Interval(1.0, 5.0)
    # Five identical values: the prior variance keeps the interval open.
    cs = mean_cs(5, 5.0, 5.0, ALPHA, value_range=(0.0, 1.0))
    assert cs.high == 1.0
    assert cs.low < 0.9
    # Clipping to the range, and the half-width in sigma units.
    cs = mean_cs(10_000, 5000.0, 2600.0, ALPHA, value_range=(0.0, 1.0))
    sigma = math.sqrt((0.25 + 2600 - 5000**2 / 10_000) / 10_001)
    half = sigma * normal_mixture_halfwidth(10_000, ALPHA, T_STAR)
    assert cs.low == pytest.approx(0.5 - half)
    assert cs.high == pytest.approx(0.5 + half)


@given(
    st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=300),
    st.floats(-1e3, 1e3),
    st.floats(1e-3, 1e3),
)
def test_mean_cs_contains_sample_mean(unit: list[float], lo: float, span: float) -> None:
    values = [lo + span * u for u in unit]
    hi = lo + span
    values = [min(max(v, lo), hi) for v in values]
    cs = mean_cs(len(values), sum(values), sum(v * v for v in values), ALPHA, value_range=(lo, hi))
    mean = min(max(sum(values) / len(values), lo), hi)
    assert lo <= cs.low <= mean <= cs.high <= hi
    assert cs.width > 0


# --- proportion_cs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k"), [(1, 0), (1, 1), (10, 3), (100, 50), (1000, 12), (20_000, 200), (500, 500)]
)
def test_proportion_cs_matches_brute_force(n: int, k: int) -> None:
    step = 5e-6
    grid = np.linspace(0, 1, round(1 / step) + 1)
    inside = grid[_proportion_log_m(np.array(n), np.array(k), grid) < -math.log(ALPHA)]
    cs = proportion_cs(n, k, ALPHA)
    # The exact ends lie within a grid step outside the outermost grid points inside the set
    # (1e-9: an end may fall on a grid point, and bisection rounds outwards).
    assert inside[0] - step - 1e-9 < cs.low <= inside[0] + 1e-12
    assert inside[-1] - 1e-12 <= cs.high < inside[-1] + step + 1e-9
    # Interior ends sit on the boundary ln M = ln(1 / alpha), to bisection precision.
    for end in (cs.low, cs.high):
        if 0 < end < 1:
            value = float(_proportion_log_m(np.array(n), np.array(k), end))
            assert value == pytest.approx(-math.log(ALPHA), abs=1e-7)


@pytest.mark.parametrize("n", [1, 2, 37, 1000, 200_000])
def test_proportion_cs_all_or_nothing(n: int) -> None:
    none, every = proportion_cs(n, 0, ALPHA), proportion_cs(n, n, ALPHA)
    assert none.low == 0.0
    assert every.high == 1.0
    assert every.low == pytest.approx(1 - none.high, abs=1e-12)  # symmetric prior
    # With k = 0, ln M(p) = ln(mix) - n ln(1 - p): the upper end in closed form.
    log_mix = float(_proportion_log_m(np.array(n), np.array(0), 0.0))
    assert none.high == pytest.approx(-math.expm1((log_mix + math.log(ALPHA)) / n), rel=1e-8)
    assert proportion_cs(0, 0, ALPHA) == Interval(0.0, 1.0)


@pytest.mark.parametrize(("p", "steps"), [(0.5, 5000), (0.01, 20_000)])
def test_proportion_cs_time_uniform_coverage(p: float, steps: int) -> None:
    rng = np.random.default_rng(round(p * 1000))
    k = np.cumsum(rng.random((PATHS, steps)) < p, axis=1)
    n = np.broadcast_to(np.arange(1, steps + 1), k.shape)
    log_m = _proportion_log_m(n, k, p)
    # The CS misses p at step i iff ln M_i(p) >= ln(1 / alpha): ask proportion_cs at the
    # step where ln M peaks on each path.
    worst = np.argmax(log_m, axis=1)
    missed = [
        not proportion_cs(int(i) + 1, int(k[path, i]), ALPHA).contains(p)
        for path, i in enumerate(worst)
    ]
    assert missed == list(log_m.max(axis=1) >= -math.log(ALPHA))
    assert float(np.mean(missed)) <= ALPHA + SLACK


@given(st.integers(0, 10**6), st.data())
def test_proportion_cs_contains_rate(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, n))
    cs = proportion_cs(n, k, ALPHA)
    rate = k / n if n else 0.5
    assert 0.0 <= cs.low <= rate <= cs.high <= 1.0
    wider = proportion_cs(n, k, ALPHA / 10)
    assert wider.low <= cs.low
    assert wider.high >= cs.high


# --- quantiles ----------------------------------------------------------------------------


def _brute_force_ranks(
    n: int, q: float, alpha: float, t_star: float
) -> tuple[int | None, int | None]:
    ks = np.arange(n + 1)
    admissible = ks[_quantile_log_m(n, ks, q, alpha, t_star) < -math.log(alpha)]
    assert np.all(np.diff(admissible) == 1)  # an interval of counts
    k_lo, k_hi = int(admissible[0]), int(admissible[-1])
    return (k_lo if k_lo > 0 else None, k_hi + 1 if k_hi < n else None)


@pytest.mark.parametrize("n", [0, 1, 2, 9, 10, 57, 400, 3000, 20_000])
@pytest.mark.parametrize("q", [0.01, 0.5, 0.95, 0.99])
@pytest.mark.parametrize(("alpha", "t_star"), [(0.05, 1000.0), (0.003, 5000.0), (0.2, 5.0)])
def test_quantile_rank_bounds_match_brute_force(
    n: int, q: float, alpha: float, t_star: float
) -> None:
    bounds = quantile_rank_bounds(n, q, alpha, t_star=t_star)
    expected = (None, None) if n == 0 else _brute_force_ranks(n, q, alpha, t_star)
    assert bounds == expected


@pytest.mark.parametrize(("q", "steps"), [(0.95, 10_000), (0.5, 5000)])
def test_quantile_time_uniform_coverage(q: float, steps: int) -> None:
    rng = np.random.default_rng(round(q * 100))
    xi = math.exp(sps.norm.ppf(q))  # the q-quantile of a standard lognormal
    below = np.cumsum(rng.lognormal(size=(PATHS, steps)) <= xi, axis=1)
    # X_(r_lo) <= xi iff #{X <= xi} >= r_lo, and X_(r_hi) >= xi iff #{X <= xi} < r_hi.
    k_lo, k_hi = np.zeros(steps), np.zeros(steps)
    for n in range(1, steps + 1):
        r_lo, r_hi = quantile_rank_bounds(n, q, ALPHA)
        k_lo[n - 1] = 0 if r_lo is None else r_lo
        k_hi[n - 1] = n if r_hi is None else r_hi - 1
    missed = np.any((below < k_lo) | (below > k_hi), axis=1)
    assert float(np.mean(missed)) <= ALPHA + SLACK


def test_quantile_band_is_not_absurdly_conservative() -> None:
    n, q = 10_000, 0.95
    r_lo, r_hi = quantile_rank_bounds(n, q, ALPHA)
    assert r_lo is not None
    assert r_hi is not None
    fixed = sps.binom.ppf(1 - ALPHA / 2, n, q) - sps.binom.ppf(ALPHA / 2, n, q)
    assert fixed < r_hi - r_lo < 4 * fixed


def test_quantile_rank_bounds_is_fast() -> None:
    quantile_rank_bounds(200_000, 0.95, 0.001, t_star=5000)
    best = math.inf
    for _ in range(5):
        start = time.perf_counter()
        quantile_rank_bounds(200_000, 0.95, 0.001, t_star=5000)
        best = min(best, time.perf_counter() - start)
    assert best < 0.05  # typically ~20 microseconds: a binary search, not a scan


def test_quantile_cs_picks_the_order_statistics() -> None:
    rng = np.random.default_rng(3)
    values = sorted(rng.lognormal(size=2000).tolist())
    r_lo, r_hi = quantile_rank_bounds(2000, 0.95, ALPHA)
    assert r_lo is not None
    assert r_hi is not None
    assert quantile_cs(values, 0.95, ALPHA) == Interval(values[r_lo - 1], values[r_hi - 1])
    assert quantile_cs(values, 0.95, ALPHA).contains(math.exp(sps.norm.ppf(0.95)))
    assert quantile_cs([], 0.5, ALPHA) == Interval(-math.inf, math.inf)
    assert quantile_cs([1.0, 2.0, 3.0], 0.95, ALPHA).high == math.inf
    with pytest.raises(ValueError, match="sorted"):
        quantile_cs(values[::-1], 0.95, ALPHA)


@given(st.integers(0, 300_000), st.floats(0.001, 0.999))
def test_rank_bounds_ordered_around_nq(n: int, q: float) -> None:
    r_lo, r_hi = quantile_rank_bounds(n, q, ALPHA)
    if r_lo is not None:
        assert 1 <= r_lo <= n * q + 1
    if r_hi is not None:
        assert n * q <= r_hi <= n
    if r_lo is not None and r_hi is not None:
        assert r_lo < r_hi


# --- combining and deciding ---------------------------------------------------------------


def test_difference_interval() -> None:
    assert difference_interval(Interval(0.1, 0.3), Interval(0.05, 0.2)) == Interval(
        0.1 - 0.2, 0.3 - 0.05
    )
    assert difference_interval(Interval(-math.inf, 1), Interval(0, math.inf)) == Interval(
        -math.inf, 1
    )


def test_ratio_interval() -> None:
    assert ratio_interval(Interval(1, 2), Interval(4, 8)) == Interval(1 / 8, 2 / 4)
    assert ratio_interval(Interval(1, 2), Interval(0, 8)) == Interval(1 / 8, math.inf)
    assert ratio_interval(Interval(1, 2), Interval(-1, 8)).high == math.inf
    assert ratio_interval(Interval(1, 2), Interval(4, math.inf)) == Interval(0, 0.5)
    assert ratio_interval(Interval(-0.5, 2), Interval(4, 8)) == Interval(0, 0.5)  # A >= 0
    assert ratio_interval(Interval(1, math.inf), Interval(4, 8)) == Interval(1 / 8, math.inf)
    with pytest.raises(ValueError, match="den"):
        ratio_interval(Interval(1, 2), Interval(-2, 0))
    with pytest.raises(ValueError, match="num"):
        ratio_interval(Interval(-2, -1), Interval(1, 2))


@pytest.mark.parametrize(
    ("low", "high", "direction", "expected"),
    [
        (0.0, 1.0, "at_most", "pass"),  # high == threshold passes
        (0.5, 0.9, "at_most", "pass"),
        (1.01, 2.0, "at_most", "fail"),
        (1.0, 2.0, "at_most", "inconclusive"),  # low == threshold is not a fail
        (0.5, 1.5, "at_most", "inconclusive"),
        (1.0, 2.0, "at_least", "pass"),  # low == threshold passes
        (0.0, 0.99, "at_least", "fail"),
        (0.0, 1.0, "at_least", "inconclusive"),  # high == threshold is not a fail
        (0.5, 1.5, "at_least", "inconclusive"),
        (-math.inf, math.inf, "at_least", "inconclusive"),
    ],
)
def test_decide(low: float, high: float, direction: Direction, expected: Outcome) -> None:
    interval = Interval(low, high)
    assert decide(interval, 1.0, direction, n=500, min_n=400) == expected
    assert decide(interval, 1.0, direction, n=399, min_n=400) == "inconclusive"


def test_split_alpha() -> None:
    assert split_alpha(0.05, 8) == 0.05 / 8
    assert split_alpha(0.05, 1) == 0.05


def test_interval() -> None:
    assert Interval(1, 3).width == 2
    assert Interval(0, math.inf).width == math.inf
    assert Interval(0, 1).contains(0)
    assert Interval(0, 1).contains(1)
    assert not Interval(0, 1).contains(1.0001)
    assert Interval(-math.inf, math.inf).contains(1e300)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: Interval(2, 1), "low <= high"),
        (lambda: Interval(math.nan, 1), "NaN"),
        (lambda: Interval(math.inf, math.inf), "low must be < inf"),
        (lambda: mixture_rho2(0, 100), "alpha"),
        (lambda: mixture_rho2(1, 100), "alpha"),
        (lambda: mixture_rho2(0.05, 0), "t_star"),
        (lambda: mixture_rho2(0.05, math.inf), "t_star"),
        (lambda: normal_mixture_halfwidth(0, 0.05, 100), "n must be"),
        (lambda: mean_cs(-1, 0, 0, 0.05, value_range=(0, 1)), "n must be"),
        (lambda: mean_cs(1, 0, 0, 0.05, value_range=(1, 1)), "value_range"),
        (lambda: mean_cs(1, 0, 0, 0.05, value_range=(0, math.inf)), "value_range"),
        (lambda: mean_cs(2, 3, 5, 0.05, value_range=(0, 1)), "total / n"),
        (lambda: mean_cs(1, 0.5, 0.25, 1.5, value_range=(0, 1)), "alpha"),
        (lambda: proportion_cs(5, 6, 0.05), "k must be"),
        (lambda: proportion_cs(5, -1, 0.05), "k must be"),
        (lambda: proportion_cs(-1, 0, 0.05), "n must be"),
        (lambda: proportion_cs(5, 1, 0.05, t_star=-1), "t_star"),
        (lambda: quantile_rank_bounds(10, 1.0, 0.05), "q must be"),
        (lambda: quantile_rank_bounds(10, 0.0, 0.05), "q must be"),
        (lambda: quantile_rank_bounds(-1, 0.5, 0.05), "n must be"),
        (lambda: quantile_rank_bounds(10, 0.5, 0.0), "alpha"),
        (lambda: decide(Interval(0, 1), 1, "below", n=1, min_n=1), "direction"),  # type: ignore[arg-type]
        (lambda: decide(Interval(0, 1), math.nan, "at_most", n=1, min_n=1), "threshold"),
        (lambda: decide(Interval(0, 1), 1, "at_most", n=1, min_n=-1), "min_n"),
        (lambda: decide(Interval(0, 1), 1, "at_most", n=-1, min_n=1), "n must be"),
        (lambda: split_alpha(0.05, 0), "parts"),
        (lambda: split_alpha(1.0, 2), "alpha"),
    ],
)
def test_invalid_arguments(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
