"""A gate's outcome from sufficient statistics: pure, shared by the live role and simulations.

Every function returns an :class:`Evaluation`: the point value, the baseline, the threshold,
an anytime-valid interval and the outcome (``pass`` when the interval is on the passing side
of the threshold, ``fail`` when wholly on the other side, else ``inconclusive``; also
``inconclusive`` below the gate's minimum sample).

Two-arm gates give each arm's interval half the gate's α and combine them conservatively
(a union bound), so the combined interval keeps the gate's α without assuming independence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processors.gates.stats import (
    Interval,
    decide,
    difference_interval,
    mean_cs,
    proportion_cs,
    quantile_rank_bounds,
    ratio_interval,
)
from schemas import Outcome
from shadowlab.core.plan import GateSpec

#: The range of a CSAT rating and of a faithfulness score.
SCORE_RANGE = (1.0, 5.0)
#: The range of a paired difference of two 0/1 outcomes, and of a pairwise preference.
SIGNED_UNIT_RANGE = (-1.0, 1.0)


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


@dataclass(frozen=True)
class MeanStats:
    """Count, sum and sum of squares of a sample: all a mean's interval needs."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0

    @classmethod
    def of(cls, values: Iterable[float]) -> MeanStats:
        """Sufficient statistics of ``values``."""
        n, total, total_sq = 0, 0.0, 0.0
        for x in values:
            n, total, total_sq = n + 1, total + x, total_sq + x * x
        return cls(n, total, total_sq)

    @property
    def mean(self) -> float | None:
        """The sample mean (``None`` when empty)."""
        return self.total / self.n if self.n else None


@dataclass(frozen=True)
class RateStats:
    """``k`` events (e.g. errors) out of ``n`` trials."""

    n: int = 0
    k: int = 0

    @property
    def rate(self) -> float | None:
        """K / n (``None`` when empty)."""
        return self.k / self.n if self.n else None


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


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _result(
    interval: Interval,
    gate: GateSpec,
    *,
    n: int,
    value: float | None,
    baseline: float | None,
) -> Evaluation:
    outcome = decide(interval, gate.threshold, gate.direction, n=n, min_n=gate.min_n)
    return Evaluation(
        outcome,
        n,
        value,
        baseline,
        gate.threshold,
        _finite(interval.low),
        _finite(interval.high),
    )


def quantile_ranks(n: int, q: float, alpha: float, t_star: float) -> list[int]:
    """The 1-based ranks a quantile gate needs of a sample of ``n``: bounds and point."""
    if n == 0:
        return []
    low, high = quantile_rank_bounds(n, q, alpha, t_star=t_star)
    ranks = {max(1, math.ceil(q * n))}
    ranks.update(r for r in (low, high) if r is not None)
    return sorted(ranks)


def quantile_ratio_ranks(gate: GateSpec, n: int, *, alpha: float, t_star: float) -> list[int]:
    """The ranks :func:`evaluate_quantile_ratio` reads of an arm of ``n`` (α/2 per arm)."""
    return quantile_ranks(n, gate.quantile, alpha / 2, t_star)


def _quantile_interval(sample: OrderStats, q: float, alpha: float, t_star: float) -> Interval:
    if sample.n == 0:
        return Interval(0.0, math.inf)
    low, high = quantile_rank_bounds(sample.n, q, alpha, t_star=t_star)
    return Interval(
        sample.values[low] if low is not None else 0.0,
        sample.values[high] if high is not None else math.inf,
    )


def evaluate_quantile_ratio(
    candidate: OrderStats,
    baseline: OrderStats,
    gate: GateSpec,
    *,
    alpha: float,
    t_star: float,
) -> Evaluation:
    """Candidate / baseline ratio of a latency quantile (distribution-free bounds per arm)."""
    q = gate.quantile
    cand = _quantile_interval(candidate, q, alpha / 2, t_star)
    base = _quantile_interval(baseline, q, alpha / 2, t_star)
    cand_point = _point_quantile(candidate, q)
    base_point = _point_quantile(baseline, q)
    value = cand_point / base_point if cand_point is not None and base_point else None
    return _result(
        ratio_interval(cand, base),
        gate,
        n=min(candidate.n, baseline.n),
        value=value,
        baseline=base_point,
    )


def _point_quantile(sample: OrderStats, q: float) -> float | None:
    if sample.n == 0:
        return None
    return sample.values[max(1, math.ceil(q * sample.n))]


def evaluate_rate_difference(
    candidate: RateStats, baseline: RateStats, gate: GateSpec, *, alpha: float, t_star: float
) -> Evaluation:
    """Candidate − baseline difference of two independent rates (exact interval per arm)."""
    cand = proportion_cs(candidate.n, candidate.k, alpha / 2, t_star=t_star)
    base = proportion_cs(baseline.n, baseline.k, alpha / 2, t_star=t_star)
    value = (
        candidate.rate - baseline.rate
        if candidate.rate is not None and baseline.rate is not None
        else None
    )
    return _result(
        difference_interval(cand, base),
        gate,
        n=min(candidate.n, baseline.n),
        value=value,
        baseline=baseline.rate,
    )


def evaluate_paired_difference(
    differences: MeanStats,
    baseline: float | None,
    gate: GateSpec,
    *,
    alpha: float,
    t_star: float,
) -> Evaluation:
    """Mean of per-pair differences in [-1, 1] (e.g. candidate error − primary error)."""
    interval = mean_cs(
        differences.n,
        differences.total,
        differences.total_sq,
        alpha,
        value_range=SIGNED_UNIT_RANGE,
        t_star=t_star,
    )
    return _result(interval, gate, n=differences.n, value=differences.mean, baseline=baseline)


def evaluate_mean(
    sample: MeanStats,
    gate: GateSpec,
    *,
    alpha: float,
    t_star: float,
    value_range: tuple[float, float],
    baseline: float | None = None,
) -> Evaluation:
    """A mean against an absolute threshold (e.g. faithfulness ≥ 4.0)."""
    interval = mean_cs(
        sample.n, sample.total, sample.total_sq, alpha, value_range=value_range, t_star=t_star
    )
    return _result(interval, gate, n=sample.n, value=sample.mean, baseline=baseline)


def evaluate_mean_difference(
    candidate: MeanStats,
    baseline: MeanStats,
    gate: GateSpec,
    *,
    alpha: float,
    t_star: float,
    value_range: tuple[float, float],
) -> Evaluation:
    """Candidate − baseline difference of two independent means (e.g. CSAT by arm)."""
    cand = mean_cs(
        candidate.n, candidate.total, candidate.total_sq, alpha / 2,
        value_range=value_range, t_star=t_star,
    )  # fmt: skip
    base = mean_cs(
        baseline.n, baseline.total, baseline.total_sq, alpha / 2,
        value_range=value_range, t_star=t_star,
    )  # fmt: skip
    value = (
        candidate.mean - baseline.mean
        if candidate.mean is not None and baseline.mean is not None
        else None
    )
    return _result(
        difference_interval(cand, base),
        gate,
        n=min(candidate.n, baseline.n),
        value=value,
        baseline=baseline.mean,
    )


def from_offline(outcome: Outcome | None, gate: GateSpec, value: float | None) -> Evaluation:
    """The offline gate: the outcome ``shadowlab eval`` published (none yet: inconclusive)."""
    return Evaluation(outcome or "inconclusive", 1 if outcome else 0, value, None,
                      gate.threshold, None, None)  # fmt: skip
