"""Anytime-valid intervals for the gates: pure functions of sufficient statistics (stdlib only).

A gate is re-evaluated on every tick, so its interval is looked at again and again as data
arrive. A fixed-n confidence interval checked that way excludes the truth at *some* tick far
more often than its nominal ``alpha``; the intervals here are **confidence sequences**: with
probability at least ``1 - alpha`` they hold at every sample size *simultaneously*, so a gate
may stop the first time its interval clears the threshold.

- :func:`mean_cs`: a mean of bounded values (scores, CSAT, preferences, latency ratios…) from
  ``(n, sum, sum of squares)``; the two-sided normal-mixture (Robbins) boundary with a
  regularised plug-in variance, an *asymptotic* confidence sequence (Waudby-Smith, Arnold,
  Wu, Ramdas & Howard 2023, "Time-uniform central limit theory and asymptotic confidence
  sequences").
- :func:`proportion_cs`: a Bernoulli rate (errors, refusals) from ``(n, k)``; an *exact*
  confidence sequence, the set of rates a beta-binomial mixture martingale has not rejected
  (Ville's inequality).
- :func:`quantile_rank_bounds` / :func:`quantile_cs`: a quantile (p95 latency) from order
  statistics, distribution-free and exact, by the same martingale applied to the count of
  samples below the quantile.
- :func:`difference_interval`, :func:`ratio_interval`: combine two intervals (each at
  ``alpha / 2``, see :func:`split_alpha`) into one for ``A - B`` or ``A / B``.
- :func:`decide`: pass / fail / inconclusive from an interval and a threshold.

Every interval is tuned by ``t_star``, the sample size at which it should be tightest: the
mixtures spread their prior so that the boundary is near-optimal around ``t_star`` samples
and still valid (only wider) at every other sample size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["at_most", "at_least"]
Outcome = Literal["pass", "fail", "inconclusive"]

#: Bisection on the log-odds ``ln(p / (1 - p))`` stops when its bracket is this narrow: a
#: relative precision of 1e-10 on ``p`` near 0 and on ``1 - p`` near 1.
_LOGIT_TOLERANCE = 1e-10
#: The log-odds bisection starts from (``p`` of about 5e-324, the smallest double).
_LOGIT_FLOOR = -745.0


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
    which approximately minimises the half-width of :func:`normal_mixture_halfwidth` at
    ``n = t_star``.

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


def normal_mixture_halfwidth(n: int, alpha: float, t_star: float) -> float:
    """Half-width, in units of sigma, of the two-sided normal-mixture boundary for a mean.

    ``sqrt(2 (n rho2 + 1) / (n**2 rho2) * ln(sqrt(n rho2 + 1) / alpha))`` with
    ``rho2 = mixture_rho2(alpha, t_star)``. Time-uniform: for Gaussian data
    ``P(exists n: |mean_n - mu| > sigma * h(n)) <= alpha``, and asymptotically so for any
    data with a finite variance.

    Args:
        n: Number of samples, >= 1.
        alpha: Error probability, in (0, 1).
        t_star: Sample size to be tightest at, > 0.

    Returns:
        The half-width ``h(n)``.

    Raises:
        ValueError: an argument out of range.
    """
    _check_n(n, least=1)
    rho2 = mixture_rho2(alpha, t_star)
    v = n * rho2 + 1.0
    return math.sqrt(2.0 * v / (n * n * rho2) * (0.5 * math.log(v) - math.log(alpha)))


def mean_cs(
    n: int,
    total: float,
    total_sq: float,
    alpha: float,
    *,
    value_range: tuple[float, float],
    t_star: float = 1000.0,
) -> Interval:
    """Asymptotic confidence sequence for the mean of values known to lie in ``value_range``.

    The interval is ``mean ± sigma * normal_mixture_halfwidth(n, alpha, t_star)``, clipped to
    ``value_range = (lo, hi)``, with the regularised plug-in variance
    ``sigma**2 = (sigma0**2 + sum (x - mean)**2) / (n + 1)``, ``sigma0**2 = (hi - lo)**2 / 4``
    (the largest variance possible in the range): a run of identical values early on never
    gives a zero-width interval, and the weight of the prior fades as ``1 / n``.

    Args:
        n: Number of values, >= 0.
        total: Their sum.
        total_sq: The sum of their squares.
        alpha: Error probability, in (0, 1).
        value_range: ``(lo, hi)``, finite with ``lo < hi``; every value lies in it.
        t_star: Sample size to be tightest at, > 0.

    Returns:
        The interval; ``Interval(lo, hi)`` when ``n == 0``.

    Raises:
        ValueError: an argument out of range, or ``total / n`` outside ``value_range``.
    """
    lo, hi = value_range
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range must be finite (lo, hi) with lo < hi; got {value_range}")
    _check_n(n)
    _check_alpha(alpha)
    _check_t_star(t_star)
    if n == 0:
        return Interval(lo, hi)
    mean = total / n
    slack = 1e-9 * (hi - lo)
    if not lo - slack <= mean <= hi + slack:
        raise ValueError(f"total / n must lie in value_range {value_range}; got {mean}")
    mean = min(max(mean, lo), hi)
    squares = max(total_sq - total * (total / n), 0.0)  # rounding may take it below zero
    sigma = math.sqrt(((hi - lo) ** 2 / 4.0 + squares) / (n + 1))
    half = sigma * normal_mixture_halfwidth(n, alpha, t_star)
    return Interval(max(mean - half, lo), min(mean + half, hi))


def _proportion_prior(alpha: float, t_star: float) -> float:
    """The ``a`` of the tuned component ``Beta(a, a)`` of :func:`proportion_cs`'s prior."""
    return max(0.5, 0.5 * _quantile_prior(alpha, t_star))


def _proportion_log_mix(n: int, k: int, a: float) -> float:
    """``ln E[r**k (1 - r)**(n - k)]`` under :func:`proportion_cs`'s prior.

    The prior is half ``Beta(1/2, 1/2)``, half ``Beta(a, a)``.
    """
    parts = [_log_beta(c + k, c + n - k) - _log_beta(c, c) for c in (0.5, a)]
    top = max(parts)
    return top + math.log(0.5 * sum(math.exp(x - top) for x in parts))


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _softplus(x: float) -> float:
    """``ln(1 + e**x)`` without overflow."""
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _sigmoid(x: float) -> float:
    """``1 / (1 + e**-x)``, the ``p`` of log-odds ``x``, without overflow."""
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def _lower_logit(k: int, m: int, log_mix: float, threshold: float) -> float:
    """Log-odds of the ``p < k / (k + m)`` where ``log_mix - ln(p**k (1 - p)**m)`` is ``threshold``.

    That function of ``p`` (``ln M``) is convex, at most 0 at ``k / (k + m)`` and ``+inf`` at
    0 for ``k >= 1``, so it crosses the threshold once below ``k / (k + m)``. Bisection runs on
    the log-odds ``x`` (``-ln p = softplus(-x)``, ``-ln(1 - p) = softplus(x)``) and returns the
    outer end of the final bracket: the interval it bounds is never narrower than the set.
    """

    def excess(x: float) -> float:
        return log_mix + k * _softplus(-x) + m * _softplus(x) - threshold

    inside = math.log(k) - math.log(m) if m > 0 else -_LOGIT_FLOOR
    outside = _LOGIT_FLOOR
    if excess(outside) < 0.0:  # only for astronomically large n: the root is below 1e-323
        return -math.inf
    while inside - outside > _LOGIT_TOLERANCE:
        mid = 0.5 * (inside + outside)
        if excess(mid) >= 0.0:
            outside = mid
        else:
            inside = mid
    return outside


def proportion_cs(n: int, k: int, alpha: float, *, t_star: float = 1000.0) -> Interval:
    """Exact confidence sequence for a Bernoulli rate ``p`` from ``k`` successes in ``n`` trials.

    The set ``{p : ln M_n(p) < ln(1 / alpha)}`` where
    ``M_n(p) = E_prior[r**k (1 - r)**(n - k)] / (p**k (1 - p)**(n - k))`` is the beta-binomial
    mixture likelihood ratio (for one ``Beta(a, b)`` prior the numerator is
    ``B(a + k, b + n - k) / B(a, b)``): a nonnegative martingale with mean 1 under ``p``, so by
    Ville's inequality the set misses the true ``p`` at *any* ``n`` with probability at most
    ``alpha``. The numerator does not depend on ``p``, so ``ln M_n`` is convex in ``p``, and
    it is at most 0 at ``k / n``: the set is an interval around ``k / n``. Each end is found
    by bisection in log space, on the log-odds ``ln(p / (1 - p))``, to a relative 1e-10 on
    ``p`` (or on ``1 - p`` near 1), rounded outwards.

    Prior: symmetric (mean 1/2), the equal-weight mixture of ``Beta(1/2, 1/2)`` and
    ``Beta(a, a)`` with ``a = max(1/2, (1 / rho2 - 1) / 2)``, ``rho2 = mixture_rho2(alpha,
    t_star)``. ``Beta(a, a)`` alone is the normal mixture's tuning carried over: its standard
    deviation ``rho / 2`` is ``rho`` standard deviations of a Bernoulli(1/2), so it is
    tightest for ``p`` near 1/2 and ``n`` near ``t_star``; but it has almost no mass near 0
    or 1 (density ~ ``p**(a - 1)``), which makes it 3-5 times wider than Jeffreys'
    ``Beta(1/2, 1/2)`` for a rate of about 1% (an error rate): Jeffreys' width is nearly
    uniform in ``p``. The mixture costs at most ``ln 2`` on the threshold, so it is within
    about 5% of the better of the two at every ``p`` (and the tuned one alone is wider than
    Jeffreys' already at ``p = 0.2``).

    Args:
        n: Number of trials, >= 0.
        k: Number of successes, ``0 <= k <= n``.
        alpha: Error probability, in (0, 1).
        t_star: Sample size to be tightest at, > 0.

    Returns:
        The interval, within ``[0, 1]``: ``low == 0.0`` when ``k == 0`` and
        ``high == 1.0`` when ``k == n``; ``Interval(0, 1)`` when ``n == 0``.

    Raises:
        ValueError: an argument out of range.
    """
    _check_n(n)
    if not 0 <= k <= n:
        raise ValueError(f"k must be in [0, n] = [0, {n}]; got {k}")
    _check_alpha(alpha)
    _check_t_star(t_star)
    if n == 0:
        return Interval(0.0, 1.0)
    log_mix = _proportion_log_mix(n, k, _proportion_prior(alpha, t_star))
    threshold = -math.log(alpha)
    low = 0.0 if k == 0 else _sigmoid(_lower_logit(k, n - k, log_mix, threshold))
    # The prior is symmetric, so the upper end for p is 1 - the lower end for 1 - p.
    high = 1.0 if k == n else _sigmoid(-_lower_logit(n - k, k, log_mix, threshold))
    return Interval(low, high)


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
    with the beta-binomial mixture likelihood ratio of :func:`proportion_cs`, here with one
    prior centred on ``q``: ``Beta(c q, c (1 - q))``, ``c = max(1, 1 / rho2 - 1)``,
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


def difference_interval(a: Interval, b: Interval) -> Interval:
    """Conservative interval for ``A - B``: ``[a.low - b.high, a.high - b.low]``.

    If ``a`` holds with probability ``1 - alpha / 2`` and ``b`` too, the result holds with
    probability ``1 - alpha`` (union bound); for time-uniform inputs, at every ``n``.

    Args:
        a: Interval for ``A``.
        b: Interval for ``B``.

    Returns:
        The interval for ``A - B``.
    """
    return Interval(a.low - b.high, a.high - b.low)


def ratio_interval(num: Interval, den: Interval) -> Interval:
    """Conservative interval for ``A / B`` where ``A >= 0`` and ``B > 0`` are known.

    ``[num.low / den.high, num.high / den.low]``, with ``num.low`` taken as at least 0 (``A``
    is), ``high = inf`` when ``den.low <= 0`` (``B`` may be arbitrarily small) and
    ``low = 0`` when ``den.high = inf``. The coverage combines as in
    :func:`difference_interval`.

    Args:
        num: Interval for the numerator ``A``; ``num.high`` must be >= 0.
        den: Interval for the denominator ``B``; ``den.high`` must be > 0.

    Returns:
        The interval for ``A / B``, within ``[0, inf]``.

    Raises:
        ValueError: ``num`` entirely below 0 or ``den`` entirely at or below 0.
    """
    if num.high < 0.0:
        raise ValueError(f"num must reach 0 or above (A >= 0); got {num}")
    if den.high <= 0.0:
        raise ValueError(f"den must reach above 0 (B > 0); got {den}")
    top = max(num.low, 0.0)
    low = 0.0 if den.high == math.inf else top / den.high
    high = math.inf if den.low <= 0.0 else num.high / den.low
    return Interval(low, high)


def decide(
    interval: Interval, threshold: float, direction: Direction, *, n: int, min_n: int
) -> Outcome:
    """A gate's outcome from its interval.

    ``at_most`` passes when ``interval.high <= threshold`` and fails when
    ``interval.low > threshold``; ``at_least`` passes when ``interval.low >= threshold`` and
    fails when ``interval.high < threshold``. Otherwise, and whenever ``n < min_n``, the
    outcome is ``inconclusive``.

    Args:
        interval: The gate's current interval.
        threshold: The value the metric must stay at most / at least.
        direction: ``"at_most"`` or ``"at_least"``.
        n: Samples behind the interval, >= 0.
        min_n: Fewest samples for a conclusive outcome, >= 0.

    Returns:
        ``"pass"``, ``"fail"`` or ``"inconclusive"``.

    Raises:
        ValueError: an argument out of range.
    """
    if direction not in ("at_most", "at_least"):
        raise ValueError(f"direction must be 'at_most' or 'at_least'; got {direction!r}")
    if math.isnan(threshold):
        raise ValueError("threshold must be a number; got nan")
    _check_n(n)
    if min_n < 0:
        raise ValueError(f"min_n must be >= 0; got {min_n}")
    if n < min_n:
        return "inconclusive"
    if direction == "at_most":
        if interval.high <= threshold:
            return "pass"
        return "fail" if interval.low > threshold else "inconclusive"
    if interval.low >= threshold:
        return "pass"
    return "fail" if interval.high < threshold else "inconclusive"


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
