"""A gate's outcome from sufficient statistics: pure, shared by the live role and simulations.

Every function returns an :class:`Evaluation`: the point value, the baseline, the threshold,
two one-sided anytime-valid bounds and the outcome. A gate spends its two error budgets
(:class:`Alphas`) on two one-sided questions: *has it failed* (the bound on the failing side
is wholly past the threshold, at ``to_fail``) and *has it passed* (the bound on the passing
side is within it, at ``to_pass``); else, and below the gate's minimum sample, it is
``inconclusive``. ``ci_low`` / ``ci_high`` are those two bounds.

The comparisons are **paired**: in shadow each pair is one request answered by both models;
in canary each pair is one canary-arm request matched with one primary-arm request of the
same tick of event time (:mod:`processors.gates.queries`), so both arms cover the same hours
of the day whatever the canary weight was. A per-pair difference is a bounded value whose
mean is tested by betting (:mod:`processors.gates.betting`): exact, nonasymptotic and valid
while the traffic drifts. Latency quantiles use distribution-free order-statistic bounds per
arm; a failed call (error, timeout) is the slowest possible latency (``inf``).

Margins are the user's: ``error rate <= baseline × (1 + threshold) + floor`` (relative, with
a small absolute floor), ``CSAT >= baseline + threshold`` (``threshold = -m``),
``p95 <= threshold × baseline p95``, ``faithfulness >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from processors.gates import betting
from processors.gates.stats import quantile_rank_bounds
from schemas import Outcome
from shadowlab.core.plan import GateSpec

#: The range of a CSAT rating and of a faithfulness score.
SCORE_RANGE = (1.0, 5.0)
#: The range of a pairwise preference (candidate 1, tie 0, primary -1).
SIGNED_UNIT_RANGE = (-1.0, 1.0)
#: A share (0/1 outcomes).
UNIT_RANGE = (0.0, 1.0)
#: Continuous scores are binned to this many steps of their range before betting.
SCORE_BINS = 400


@dataclass(frozen=True)
class Alphas:
    """A gate's error budgets: of a false ``fail`` and of a false ``pass``."""

    to_fail: float
    to_pass: float


@dataclass(frozen=True)
class Evaluation:
    """One gate's numbers at one tick."""

    outcome: Outcome
    n: int
    value: float | None
    baseline: float | None
    threshold: float
    ci_low: float | None
    ci_high: float | None
    #: The gate's rule in words, e.g. ``error rate <= 1.1 × baseline + 0.002``.
    margin: str = ""
    #: For an inconclusive gate: the samples it needs at the current effect and spread
    #: (``None``: decided, or no effect to detect).
    needed_n: int | None = None


@dataclass(frozen=True)
class Pairs:
    """How many pairs of each (candidate value, baseline value)."""

    counts: Mapping[tuple[float, float], int]

    @property
    def n(self) -> int:
        """The number of pairs."""
        return sum(self.counts.values())

    def mean(self, side: int) -> float | None:
        """The candidate's (``side=0``) or the baseline's (``1``) mean over the pairs."""
        n = self.n
        return sum(v[side] * c for v, c in self.counts.items()) / n if n else None

    def differences(self, scale: float = 1.0) -> dict[float, int]:
        """The histogram of ``candidate - scale × baseline`` over the pairs."""
        out: dict[float, int] = {}
        for (c, b), count in self.counts.items():
            d = c - scale * b
            out[d] = out.get(d, 0) + count
        return out


@dataclass(frozen=True)
class Scores:
    """A histogram of one arm's scores: value → count."""

    counts: Mapping[float, int]

    @property
    def n(self) -> int:
        """The number of scores."""
        return sum(self.counts.values())

    @property
    def mean(self) -> float | None:
        """The mean score (``None`` when empty)."""
        return betting.mean_and_variance(self.counts)[1]


@dataclass(frozen=True)
class OrderStats:
    """Some order statistics of a sample of size ``n``: ``values[rank]`` (1-based ranks)."""

    n: int
    values: Mapping[int, float]


@dataclass(frozen=True)
class OfflineStats:
    """The outcome and value ``shadowlab eval`` published for the offline gate (or none yet)."""

    outcome: Outcome | None = None
    value: float | None = None


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def needed_samples(
    n: int,
    value: float | None,
    low: float | None,
    high: float | None,
    gate: GateSpec,
    threshold: float,
) -> int | None:
    """Samples an inconclusive gate needs at its current effect and spread.

    The bound on the side the point value is on shrinks about as ``1 / sqrt(n)``: it reaches
    the threshold at ``n × (half-width / distance to the threshold)**2``; at least ``min_n``.
    ``None`` when the value sits on the threshold (no effect to show) or is unknown.
    """
    if value is None or not math.isfinite(value):
        return None
    at_most = gate.direction == "at_most"
    passing_side = value <= threshold if at_most else value >= threshold
    # at_most: the upper bound must come down to pass, the lower bound up to fail
    use_high = passing_side == at_most
    edge = high if use_high else low
    distance = abs(value - threshold)
    if edge is None or not math.isfinite(edge) or distance == 0.0 or n == 0:
        return None
    half = abs(edge - value)
    return max(gate.min_n, math.ceil(n * (half / distance) ** 2))


def _result(
    outcome: Outcome,
    gate: GateSpec,
    *,
    n: int,
    value: float | None,
    baseline: float | None,
    low: float | None,
    high: float | None,
    threshold: float | None = None,
) -> Evaluation:
    if n < gate.min_n:
        outcome = "inconclusive"
    threshold = gate.threshold if threshold is None else threshold
    needed = None
    if outcome == "inconclusive":
        needed = needed_samples(n, value, low, high, gate, threshold)
        if n < gate.min_n:
            needed = max(needed or 0, gate.min_n)
    return Evaluation(
        outcome, n, _finite(value), _finite(baseline),
        threshold, _finite(low), _finite(high),
        gate.margin, needed,
    )  # fmt: skip


def _bet(
    hist: Mapping[float, int],
    gate: GateSpec,
    *,
    threshold: float,
    value_range: tuple[float, float],
    alphas: Alphas,
    interval: bool,
) -> tuple[Outcome, float | None, float | None]:
    """Outcome and (if ``interval``) the two bounds of a bounded mean against ``threshold``."""
    lo, hi = value_range
    fails_above = gate.direction == "at_most"  # at_most fails when the mean is above
    fail_side: betting.Side = "above" if fails_above else "below"
    pass_side: betting.Side = "below" if fails_above else "above"
    above, below = hist, hist
    if len(hist) > SCORE_BINS:  # continuous scores: bounded work, rounded to the safe side
        above = betting.binned(hist, lo=lo, hi=hi, bins=SCORE_BINS, side="above")
        below = betting.binned(hist, lo=lo, hi=hi, bins=SCORE_BINS, side="below")
    data = {"above": above, "below": below}
    outcome: Outcome = "inconclusive"
    if betting.rejects(data[fail_side], threshold, alphas.to_fail, lo=lo, hi=hi, side=fail_side):
        outcome = "fail"
    elif betting.rejects(data[pass_side], threshold, alphas.to_pass, lo=lo, hi=hi, side=pass_side):
        outcome = "pass"
    if not interval:
        return outcome, None, None
    budget = {fail_side: alphas.to_fail, pass_side: alphas.to_pass}
    low = betting.bound(above, budget["above"], lo=lo, hi=hi, side="above")
    high = betting.bound(below, budget["below"], lo=lo, hi=hi, side="below")
    return outcome, low, high


def evaluate_error_pairs(
    pairs: Pairs, gate: GateSpec, *, alphas: Alphas, interval: bool = True
) -> Evaluation:
    """Error rate against ``baseline × (1 + threshold) + floor``, over pairs of 0/1 errors.

    Per pair ``d = candidate error - (1 + threshold) × baseline error``, in
    ``[-(1 + threshold), 1]``; the gate passes when the mean of ``d`` is shown to be at most
    ``floor`` and fails when it is shown above. ``value`` is the mean of ``d`` (the excess
    over the allowed rate, before the floor), ``baseline`` the baseline's rate.
    """
    scale = 1.0 + gate.threshold
    hist = pairs.differences(scale)
    n, mean, _ = betting.mean_and_variance(hist)
    outcome, low, high = _bet(
        hist, gate, threshold=gate.floor, value_range=(-scale, 1.0), alphas=alphas,
        interval=interval,
    )  # fmt: skip
    return _result(outcome, gate, n=n, value=mean, baseline=pairs.mean(1), low=low, high=high,
                   threshold=gate.floor)  # fmt: skip


def evaluate_paired_difference(
    pairs: Pairs,
    gate: GateSpec,
    *,
    alphas: Alphas,
    value_range: tuple[float, float],
    interval: bool = True,
) -> Evaluation:
    """Mean candidate - baseline difference over pairs (CSAT) against ``threshold``."""
    lo, hi = value_range
    hist = pairs.differences()
    n, mean, _ = betting.mean_and_variance(hist)
    outcome, low, high = _bet(
        hist, gate, threshold=gate.threshold, value_range=(lo - hi, hi - lo), alphas=alphas,
        interval=interval,
    )  # fmt: skip
    return _result(outcome, gate, n=n, value=mean, baseline=pairs.mean(1), low=low, high=high)


def evaluate_mean(
    scores: Scores,
    gate: GateSpec,
    *,
    alphas: Alphas,
    value_range: tuple[float, float],
    baseline: float | None = None,
    interval: bool = True,
) -> Evaluation:
    """One arm's mean score against an absolute threshold (faithfulness >= 4.0)."""
    outcome, low, high = _bet(
        scores.counts, gate, threshold=gate.threshold, value_range=value_range, alphas=alphas,
        interval=interval,
    )  # fmt: skip
    return _result(outcome, gate, n=scores.n, value=scores.mean, baseline=baseline,
                   low=low, high=high)  # fmt: skip


def quantile_ranks(n: int, q: float, alpha: float, t_star: float) -> list[int]:
    """The 1-based ranks a quantile bound at ``alpha`` needs of a sample of ``n``, and the point."""
    if n == 0:
        return []
    low, high = quantile_rank_bounds(n, q, alpha, t_star=t_star)
    ranks = {max(1, math.ceil(q * n))}
    ranks.update(r for r in (low, high) if r is not None)
    return sorted(ranks)


def quantile_ratio_ranks(gate: GateSpec, n: int, *, alphas: Alphas, t_star: float) -> list[int]:
    """The ranks :func:`evaluate_quantile_ratio` reads of an arm of ``n`` (budgets halved)."""
    ranks = {
        r for alpha in (alphas.to_fail, alphas.to_pass)
        for r in quantile_ranks(n, gate.quantile, alpha / 2, t_star)
    }  # fmt: skip
    return sorted(ranks)


def _quantile_bounds(
    sample: OrderStats, q: float, alpha: float, t_star: float
) -> tuple[float, float]:
    """``(low, high)`` of a quantile; either may be ``inf`` (failed calls are)."""
    if sample.n == 0:
        return 0.0, math.inf
    low, high = quantile_rank_bounds(sample.n, q, alpha, t_star=t_star)
    return (
        sample.values[low] if low is not None else 0.0,
        sample.values[high] if high is not None else math.inf,
    )


def _ratio(num: float, den: float) -> float:
    """``num / den`` for latencies in ``[0, inf]``: ``inf / inf`` is 1 (both all failures)."""
    if math.isinf(num) and math.isinf(den):
        return 1.0
    if den == 0.0:
        return math.inf if num > 0 else 1.0
    return num / den


def evaluate_quantile_ratio(
    candidate: OrderStats,
    baseline: OrderStats,
    gate: GateSpec,
    *,
    alphas: Alphas,
    t_star: float,
) -> Evaluation:
    """Candidate / baseline ratio of a latency quantile, failures counted as ``inf``.

    Fails when the candidate's lower bound over the baseline's upper bound (each arm at
    ``to_fail / 2``) is above the threshold; passes when the candidate's upper bound over
    the baseline's lower bound (each at ``to_pass / 2``) is within it.
    """
    q = gate.quantile
    fail_c, fail_b = (_quantile_bounds(s, q, alphas.to_fail / 2, t_star)
                      for s in (candidate, baseline))  # fmt: skip
    pass_c, pass_b = (_quantile_bounds(s, q, alphas.to_pass / 2, t_star)
                      for s in (candidate, baseline))  # fmt: skip
    # fail: the candidate's least plausible p95 over the baseline's greatest (inf/inf: no
    # evidence); pass: the candidate's greatest over the baseline's least
    low = 0.0 if fail_b[1] == math.inf else _ratio(fail_c[0], fail_b[1])
    high = math.inf if pass_b[0] <= 0.0 else _ratio(pass_c[1], pass_b[0])
    outcome: Outcome = "inconclusive"
    if low > gate.threshold:
        outcome = "fail"
    elif high <= gate.threshold:
        outcome = "pass"
    cand_point, base_point = _point_quantile(candidate, q), _point_quantile(baseline, q)
    value = _ratio(cand_point, base_point) if cand_point is not None and base_point else None
    return _result(outcome, gate, n=min(candidate.n, baseline.n), value=value,
                   baseline=base_point, low=low, high=high)  # fmt: skip


def _point_quantile(sample: OrderStats, q: float) -> float | None:
    if sample.n == 0:
        return None
    return sample.values[max(1, math.ceil(q * sample.n))]


def from_offline(outcome: Outcome | None, gate: GateSpec, value: float | None) -> Evaluation:
    """The offline gate: the outcome ``shadowlab eval`` published (none yet: inconclusive)."""
    return Evaluation(outcome or "inconclusive", 1 if outcome else 0, value, None,
                      gate.threshold, None, None, gate.margin)  # fmt: skip
