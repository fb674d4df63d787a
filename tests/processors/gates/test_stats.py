"""Anytime-valid intervals: closed forms, brute-force references and Monte Carlo coverage.

The coverage tests draw whole sample paths with a fixed seed and count the paths on which an
interval *ever* misses the truth (the event a time-uniform guarantee bounds by ``alpha``).
Their slack: with 400 paths the Monte Carlo standard error of a rate near 0.05 is about
0.011, and the bound allowed is ``alpha + 0.025`` (over two standard errors). The slack is
needed: a mixture martingale crosses ``1 / alpha`` with little overshoot, so Ville's bound
is nearly tight and over a long horizon the miss rates approach ``alpha`` (with 4,000 paths
of 5,000 steps: about 0.04). Bounded means are tested in ``test_betting.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.special import betaln, xlog1py, xlogy

from processors.gates.stats import (
    Interval,
    mixture_rho2,
    quantile_cs,
    quantile_rank_bounds,
    split_alpha,
)

ALPHA = 0.05
T_STAR = 1000.0
PATHS = 400
SLACK = 0.025  # Monte Carlo allowance on top of alpha, see the module docstring


def _log_term(alpha: float) -> float:
    return -2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))


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
        (lambda: quantile_rank_bounds(10, 1.0, 0.05), "q must be"),
        (lambda: quantile_rank_bounds(10, 0.0, 0.05), "q must be"),
        (lambda: quantile_rank_bounds(-1, 0.5, 0.05), "n must be"),
        (lambda: quantile_rank_bounds(10, 0.5, 0.0), "alpha"),
        (lambda: split_alpha(0.05, 0), "parts"),
        (lambda: split_alpha(1.0, 2), "alpha"),
    ],
)
def test_invalid_arguments(call: Callable[[], object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
