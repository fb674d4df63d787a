"""Anytime-valid intervals for the gates: pure functions of sufficient statistics (stdlib only).

A gate is re-evaluated on every tick, so its interval is looked at again and again as data
arrive. A fixed-n confidence interval checked that way excludes the truth at *some* tick far
more often than its nominal ``alpha``; the intervals here are **confidence sequences**: with
probability at least ``1 - alpha`` they hold at every sample size *simultaneously*, so a gate
may stop the first time its interval clears the threshold.

- :func:`quantile_rank_bounds` / :func:`quantile_cs`: a quantile (p95 latency) from order
  statistics, distribution-free and exact, by a beta-binomial mixture martingale applied to
  the count of samples below the quantile.

Every interval is tuned by ``t_star``, the sample size at which it should be tightest: the
mixture spreads its prior so that the boundary is near-optimal around ``t_star`` samples and
still valid (only wider) at every other sample size. Means (scores, rates, paired
differences) are bounded by betting instead: :mod:`processors.gates.betting`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]``; either end may be infinite.

    Attributes:
        low: Lower end, ``-math.inf`` when unbounded below.
        high: Upper end, ``math.inf`` when unbounded above.
    """

    low: float
    high: float

    def __post_init__(self) -> None:
        if math.isnan(self.low) or math.isnan(self.high) or self.low > self.high:
            raise ValueError(f"Interval needs low <= high (no NaN); got [{self.low}, {self.high}]")
        if self.low == math.inf or self.high == -math.inf:
            raise ValueError(
                f"Interval low must be < inf and high > -inf; got [{self.low}, {self.high}]"
            )

    def contains(self, x: float) -> bool:
        """Whether ``low <= x <= high``."""
        return self.low <= x <= self.high

    @property
    def width(self) -> float:
        """``high - low`` (``inf`` when either end is unbounded)."""
        return self.high - self.low


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")


def _check_t_star(t_star: float) -> None:
    if not 0.0 < t_star < math.inf:
        raise ValueError(f"t_star must be a positive finite sample size; got {t_star}")


def _check_n(n: int, least: int = 0) -> None:
    if n < least:
        raise ValueError(f"n must be an integer >= {least}; got {n}")


def _mixture_log_term(alpha: float) -> float:
    """``-2 ln alpha + ln(1 - 2 ln alpha)``: the numerator of :func:`mixture_rho2`."""
    return -2.0 * math.log(alpha) + math.log1p(-2.0 * math.log(alpha))


def mixture_rho2(alpha: float, t_star: float) -> float:
    """Variance ``rho**2`` of the normal mixture that makes its boundary tightest near ``t_star``.

    ``rho**2 = (-2 ln alpha + ln(1 - 2 ln alpha)) / t_star`` (Waudby-Smith et al. 2023),
    which approximately minimises the half-width of the normal-mixture boundary for a mean at
    ``n = t_star``; the quantile bounds carry that tuning over to their Beta prior.

    Args:
        alpha: Error probability, in (0, 1).
        t_star: Sample size to be tightest at, > 0.

    Returns:
        The mixture variance (in units of the data's variance).

    Raises:
        ValueError: ``alpha`` or ``t_star`` out of range.
    """
    _check_alpha(alpha)
    _check_t_star(t_star)
    return _mixture_log_term(alpha) / t_star


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _quantile_prior(alpha: float, t_star: float) -> float:
    """The concentration ``c`` of the Beta prior of :func:`quantile_rank_bounds`."""
    return max(1.0, 1.0 / mixture_rho2(alpha, t_star) - 1.0)


def _first_true(lo: int, hi: int, pred: Callable[[int], bool]) -> int:
    """The least ``i`` in ``(lo, hi]`` with ``pred(i)``; ``pred`` is monotone, true at ``hi``."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if pred(mid):
            hi = mid
        else:
            lo = mid
    return hi


def quantile_rank_bounds(
    n: int, q: float, alpha: float, *, t_star: float = 1000.0
) -> tuple[int | None, int | None]:
    """Distribution-free, time-uniform ranks of order statistics that bracket the ``q``-quantile.

    ``S_n = #{X_i <= xi_q}`` is ``Binomial(n, q)`` (for continuous data; with ties the bounds
    stay valid, see below). The admissible counts are ``{k : ln M_n(q; k) < ln(1 / alpha)}``
    with the beta-binomial mixture likelihood ratio
    ``M_n(q; k) = E_prior[r**k (1 - r)**(n - k)] / (q**k (1 - q)**(n - k))``, with one prior
    centred on ``q``: ``Beta(c q, c (1 - q))``, ``c = max(1, 1 / rho2 - 1)``,
    ``rho2 = mixture_rho2(alpha, t_star)``, whose standard deviation
    ``sqrt(q (1 - q) / (c + 1))`` is ``rho`` standard deviations of one Bernoulli(q), the
    normal mixture's tuning for ``t_star``. By Ville's inequality
    ``S_n`` leaves that set at some ``n`` with probability at most ``alpha``. ``ln M_n`` is
    convex in ``k`` with its minimum (<= 0) near ``n q``, so the set is an integer interval
    ``[k_lo, k_hi]``, found by binary search on each side of the minimum (``O(log n)``).

    ``S_n >= k_lo`` means ``X_(k_lo) <= xi_q`` and ``S_n <= k_hi`` means
    ``X_(k_hi + 1) >= xi_q``. With ties, ``#{X_i <= xi_q}`` is stochastically larger and
    ``#{X_i < xi_q}`` smaller than one ``Binomial(n, q)`` walk, which keeps both true.

    Args:
        n: Number of samples, >= 0.
        q: The quantile, in (0, 1).
        alpha: Error probability, in (0, 1).
        t_star: Sample size to be tightest at, > 0.

    Returns:
        ``(r_lo, r_hi)``: 1-based ranks with ``X_(r_lo) <= xi_q <= X_(r_hi)`` at every ``n``
        with probability ``>= 1 - alpha``; ``None`` for an unbounded side (``r_lo`` when
        ``k_lo == 0``, ``r_hi`` when ``k_hi == n``).

    Raises:
        ValueError: an argument out of range.
    """
    _check_n(n)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1); got {q}")
    _check_alpha(alpha)
    _check_t_star(t_star)
    c = _quantile_prior(alpha, t_star)
    a, b = c * q, c * (1.0 - q)
    log_q, log_1q = math.log(q), math.log1p(-q)
    const = math.lgamma(a + b + n) + _log_beta(a, b)

    def log_m(k: int) -> float:  # ln M_n(q; k)
        return math.lgamma(a + k) + math.lgamma(b + n - k) - const - k * log_q - (n - k) * log_1q

    threshold = -math.log(alpha)
    centre = _integer_minimum(log_m, min(max(round(n * q), 0), n), n)
    k_lo, k_hi = 0, n
    if log_m(0) >= threshold:
        k_lo = _first_true(0, centre, lambda k: log_m(k) < threshold)
    if log_m(n) >= threshold:
        k_hi = _first_true(centre, n, lambda k: log_m(k) >= threshold) - 1
    return (k_lo if k_lo > 0 else None, k_hi + 1 if k_hi < n else None)


def _integer_minimum(f: Callable[[int], float], start: int, n: int) -> int:
    """The integer in ``[0, n]`` minimising ``f``, convex, by local descent from ``start``.

    For ``ln M_n(q; k)`` the minimum is within about one of ``n q``, so starting there the
    descent takes a step or two.
    """
    k = start
    while k > 0 and f(k - 1) < f(k):
        k -= 1
    while k < n and f(k + 1) < f(k):
        k += 1
    return k


def quantile_cs(
    sorted_values: Sequence[float], q: float, alpha: float, *, t_star: float = 1000.0
) -> Interval:
    """Time-uniform interval for the ``q``-quantile from values sorted in ascending order.

    :func:`quantile_rank_bounds` applied to ``sorted_values`` (whose order is not re-checked
    beyond the two order statistics used).

    Args:
        sorted_values: The samples, ascending.
        q: The quantile, in (0, 1).
        alpha: Error probability, in (0, 1).
        t_star: Sample size to be tightest at, > 0.

    Returns:
        ``[X_(r_lo), X_(r_hi)]``, with ``-inf`` / ``inf`` for an unbounded side.

    Raises:
        ValueError: an argument out of range, or the two order statistics out of order.
    """
    r_lo, r_hi = quantile_rank_bounds(len(sorted_values), q, alpha, t_star=t_star)
    low = -math.inf if r_lo is None else float(sorted_values[r_lo - 1])
    high = math.inf if r_hi is None else float(sorted_values[r_hi - 1])
    if low > high:
        raise ValueError("sorted_values must be sorted in ascending order")
    return Interval(low, high)


def split_alpha(alpha: float, parts: int) -> float:
    """Bonferroni split: ``alpha / parts``.

    Args:
        alpha: Total error probability, in (0, 1).
        parts: Number of intervals sharing it, >= 1.

    Returns:
        The error probability of each part.

    Raises:
        ValueError: an argument out of range.
    """
    _check_alpha(alpha)
    if parts < 1:
        raise ValueError(f"parts must be an integer >= 1; got {parts}")
    return alpha / parts
