"""Nonasymptotic, anytime-valid tests and bounds for a bounded mean, by betting (stdlib only).

For values in ``[lo, hi]`` and a hypothesised mean ``m``, a gambler who stakes a fixed
fraction ``f`` of her capital on "the mean is above ``m``" multiplies it by
``1 + f (x - m) / (m - lo)`` per value ``x``. If the true (conditional) mean of every value
is at most ``m``, that capital is a nonnegative supermartingale starting at 1; so is the
average of several such gamblers (here :data:`FRACTIONS`, a log-spaced grid of fractions).
By Ville's inequality the average reaches ``1 / alpha`` at *any* sample size with
probability at most ``alpha``: ``capital >= 1 / alpha`` rejects "mean <= m" with an
anytime-valid error ``alpha``, whatever the data's distribution in ``[lo, hi]`` and even when
it drifts over time (a daily cycle), as long as the hypothesis holds at every step.
(Waudby-Smith & Ramdas 2024, "Estimating means of bounded random variables by betting", with
constant bets mixed over a grid instead of predictable ones.)

Constant bets make the capital a function of the *histogram* of the values only (the order
does not matter), so ClickHouse can return ``value → count`` and the test needs no rows:
``ln capital = ln mean_j exp(sum_x count_x ln(1 + f_j (x - m) / (m - lo)))``.

The lower confidence bound is the least ``m`` the test does not reject; the capital falls as
``m`` rises, so it is found by bisection. Upper tests and bounds are the same on ``-x``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final, Literal

#: ``"above"``: evidence that the mean is above ``m`` (its lower bound); ``"below"``: under.
Side = Literal["above", "below"]
#: value → how many samples have it.
Histogram = Mapping[float, int]

#: The bettors' fractions of their capital: 0.9 down to about 5e-5 in steps of 0.65×, so
#: every effect-to-spread ratio has a near-optimal bettor (a missed optimum costs little).
FRACTIONS: Final[tuple[float, ...]] = tuple(0.9 * 0.65**j for j in range(24))
_LOG_GRID = math.log(len(FRACTIONS))
#: Bisection on ``m`` stops at this fraction of the range.
_TOLERANCE = 1e-7


def _check(lo: float, hi: float, alpha: float) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value range must be finite (lo, hi) with lo < hi; got ({lo}, {hi})")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")


def _log_capital_above(hist: Histogram, m: float, lo: float) -> float:
    """``ln`` of the average capital of the bettors on "the mean is above ``m``"."""
    span = m - lo
    terms = []
    for f in FRACTIONS:
        total = 0.0
        for x, count in hist.items():
            if count:
                total += count * math.log1p(f * (x - m) / span)
        terms.append(total)
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms)) - _LOG_GRID


def _mirror(hist: Histogram) -> dict[float, int]:
    return {-x: c for x, c in hist.items()}


def _validated(hist: Histogram, lo: float, hi: float) -> Histogram:
    for x, count in hist.items():
        if count < 0:
            raise ValueError(f"histogram counts must be >= 0; got {count} for {x}")
        if count and not lo <= x <= hi:
            raise ValueError(f"histogram value {x} lies outside the range [{lo}, {hi}]")
    return hist


def log_capital(hist: Histogram, m: float, *, lo: float, hi: float, side: Side) -> float:
    """``ln`` of the bettors' capital against "the mean is at most / at least ``m``".

    ``side="above"`` bets against "at most ``m``", ``"below"`` against "at least ``m``";
    ``inf`` when ``m`` is outside the range on the rejected side.

    Raises:
        ValueError: a bad range, a negative count or a value outside the range.
    """
    _check(lo, hi, 0.5)
    _validated(hist, lo, hi)
    if side == "below":
        return log_capital(_mirror(hist), -m, lo=-hi, hi=-lo, side="above")
    if m >= hi:
        return 0.0 if m == hi else -math.inf  # no value can be above hi: nothing to win
    if m <= lo:
        # every value is >= lo: a mean at most m < lo is impossible once one value is seen
        return math.inf if any(c and x > m for x, c in hist.items()) else 0.0
    return _log_capital_above(hist, m, lo)


def rejects(hist: Histogram, m: float, alpha: float, *, lo: float, hi: float, side: Side) -> bool:
    """Whether the data show, at anytime-valid level ``alpha``, the mean is above/below ``m``.

    ``side="above"``: above ``m``; ``"below"``: below it.

    Raises:
        ValueError: a bad range or ``alpha``, a negative count or a value outside the range.
    """
    _check(lo, hi, alpha)
    return log_capital(hist, m, lo=lo, hi=hi, side=side) >= -math.log(alpha)


def bound(hist: Histogram, alpha: float, *, lo: float, hi: float, side: Side) -> float:
    """The one-sided confidence bound of the mean at level ``alpha``, valid at every ``n``.

    ``side="above"``: the lower bound (the mean is above it with probability ``1 - alpha``,
    at all sample sizes at once); ``"below"``: the upper bound. With no data: ``lo`` / ``hi``.

    Raises:
        ValueError: a bad range or ``alpha``, a negative count or a value outside the range.
    """
    _check(lo, hi, alpha)
    _validated(hist, lo, hi)
    if side == "below":
        return -bound(_mirror(hist), alpha, lo=-hi, hi=-lo, side="above")
    threshold = -math.log(alpha)
    low, high = lo, hi  # rejected at low (or no data), not rejected at high
    if not any(hist.values()):
        return lo
    tolerance = _TOLERANCE * (hi - lo)
    while high - low > tolerance:
        mid = 0.5 * (low + high)
        if _log_capital_above(hist, mid, lo) >= threshold:
            low = mid
        else:
            high = mid
    return low  # the outer end: the bound is never tighter than the set


def binned(hist: Histogram, *, lo: float, hi: float, bins: int, side: Side) -> dict[float, int]:
    """``hist`` with values rounded to ``bins`` steps of the range, toward the safe side.

    Rounding every value down (for ``above``: evidence the mean is high) or up (``below``)
    can only weaken the evidence, so a test on the binned histogram keeps its level; it
    bounds the work of :func:`bound` for continuous scores.
    """
    step = (hi - lo) / bins
    out: dict[float, int] = {}
    for x, count in hist.items():
        cells = (x - lo) / step
        cell = math.floor(cells + 1e-9) if side == "above" else math.ceil(cells - 1e-9)
        value = min(max(lo + cell * step, lo), hi)
        out[value] = out.get(value, 0) + count
    return out


def mean_and_variance(hist: Histogram) -> tuple[int, float | None, float | None]:
    """``(n, mean, variance)`` of a histogram (``None`` when empty; variance 0 for one value)."""
    n = sum(hist.values())
    if n == 0:
        return 0, None, None
    mean = sum(x * c for x, c in hist.items()) / n
    variance = sum(c * (x - mean) ** 2 for x, c in hist.items()) / n
    return n, mean, variance
