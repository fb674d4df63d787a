"""Gate evaluations from sufficient statistics: wiring of intervals, thresholds and outcomes."""

from __future__ import annotations

import numpy as np
import pytest

from processors.gates.evaluate import (
    SCORE_RANGE,
    MeanStats,
    OrderStats,
    RateStats,
    evaluate_mean,
    evaluate_mean_difference,
    evaluate_paired_difference,
    evaluate_quantile_ratio,
    evaluate_rate_difference,
    quantile_ranks,
)
from processors.gates.stats import quantile_cs
from shadowlab.core.plan import GateSpec

ALPHA, T_STAR = 0.01, 5000.0
P95 = GateSpec(name="p95", stage="canary", metric="p95_latency", threshold=1.10, min_n=100)
ERRORS = GateSpec(name="e", stage="canary", metric="error_rate", threshold=0.01, min_n=100)
CSAT = GateSpec(name="c", stage="canary", metric="csat", threshold=-0.15, min_n=100)
FAITH = GateSpec(name="f", stage="canary", metric="faithfulness", threshold=4.0, min_n=100)


def order_stats(values: np.ndarray) -> OrderStats:
    ordered = np.sort(values)
    ranks = quantile_ranks(len(ordered), 0.95, ALPHA / 2, T_STAR)
    return OrderStats(len(ordered), {r: float(ordered[r - 1]) for r in ranks})


def test_quantile_ratio_is_the_conservative_ratio_of_the_two_arms_bounds() -> None:
    rng = np.random.default_rng(3)
    base = rng.lognormal(6.7, 0.5, 20_000)
    cand = rng.lognormal(6.7, 0.5, 20_000) * 1.3
    result = evaluate_quantile_ratio(
        order_stats(cand), order_stats(base), P95, alpha=ALPHA, t_star=T_STAR
    )
    c = quantile_cs(np.sort(cand).tolist(), 0.95, ALPHA / 2, t_star=T_STAR)
    b = quantile_cs(np.sort(base).tolist(), 0.95, ALPHA / 2, t_star=T_STAR)
    assert result.ci_low == pytest.approx(c.low / b.high)
    assert result.ci_high == pytest.approx(c.high / b.low)
    assert result.value == pytest.approx(1.3, rel=0.05)
    assert result.baseline == pytest.approx(np.quantile(base, 0.95), rel=0.01)
    assert result.outcome == "fail"
    same = evaluate_quantile_ratio(
        order_stats(base * 1.0), order_stats(base), P95, alpha=ALPHA, t_star=T_STAR
    )
    assert same.outcome == "pass"


def test_too_few_samples_is_inconclusive_whatever_the_values() -> None:
    result = evaluate_rate_difference(
        RateStats(50, 40), RateStats(50_000, 100), ERRORS, alpha=ALPHA, t_star=T_STAR
    )
    assert result.outcome == "inconclusive"
    assert result.n == 50


def test_error_rate_difference_fails_passes_and_straddles() -> None:
    def outcome(cand: RateStats, base: RateStats) -> str:
        return evaluate_rate_difference(cand, base, ERRORS, alpha=ALPHA, t_star=T_STAR).outcome

    assert outcome(RateStats(2_000, 200), RateStats(20_000, 200)) == "fail"
    assert outcome(RateStats(40_000, 400), RateStats(40_000, 400)) == "pass"
    assert outcome(RateStats(500, 5), RateStats(500, 5)) == "inconclusive"


def test_paired_difference_uses_the_pairs() -> None:
    # 10,000 pairs where both sides fail together 5 % of the time: the difference is exactly 0
    # on every pair, so the paired interval is narrow even though each rate is 5 %.
    pairs = MeanStats.of([0.0] * 10_000)
    result = evaluate_paired_difference(pairs, 0.05, ERRORS, alpha=ALPHA, t_star=T_STAR)
    assert result.outcome == "pass"
    assert result.ci_high is not None
    assert result.ci_high < 0.01
    unpaired = evaluate_rate_difference(
        RateStats(10_000, 500), RateStats(10_000, 500), ERRORS, alpha=ALPHA, t_star=T_STAR
    )
    assert unpaired.ci_high is not None
    assert unpaired.ci_high > result.ci_high


def test_csat_difference_and_faithfulness_thresholds() -> None:
    rng = np.random.default_rng(5)
    probs = [0.05, 0.1, 0.2, 0.35, 0.3]
    same = [MeanStats.of(rng.choice(5, 20_000, p=probs) + 1.0) for _ in range(2)]
    worse = MeanStats.of(rng.choice(5, 20_000, p=[0.3, 0.3, 0.2, 0.1, 0.1]) + 1.0)
    kwargs = {"alpha": ALPHA, "t_star": T_STAR, "value_range": SCORE_RANGE}
    assert evaluate_mean_difference(same[0], same[1], CSAT, **kwargs).outcome == "pass"  # type: ignore[arg-type]
    assert evaluate_mean_difference(worse, same[1], CSAT, **kwargs).outcome == "fail"  # type: ignore[arg-type]
    faithful = MeanStats.of(np.clip(rng.normal(4.5, 0.6, 2_000), 1, 5))
    unfaithful = MeanStats.of(np.clip(rng.normal(3.5, 0.6, 2_000), 1, 5))
    assert evaluate_mean(faithful, FAITH, **kwargs).outcome == "pass"  # type: ignore[arg-type]
    assert evaluate_mean(unfaithful, FAITH, **kwargs).outcome == "fail"  # type: ignore[arg-type]
