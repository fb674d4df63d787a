"""Gate evaluations from sufficient statistics: margins, one-sided bounds, outcomes, ETAs."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest

from processors.gates import betting
from processors.gates.evaluate import (
    SCORE_RANGE,
    Alphas,
    OrderStats,
    Pairs,
    Scores,
    evaluate_error_pairs,
    evaluate_mean,
    evaluate_paired_difference,
    evaluate_quantile_ratio,
    needed_samples,
    quantile_ranks,
)
from processors.gates.stats import quantile_cs
from shadowlab.core.plan import DEFAULT_GATES

ALPHAS, T_STAR = Alphas(0.005, 0.01), 5000.0
GATES = {g.key: g for g in DEFAULT_GATES}
P95, ERRORS, CSAT = GATES["canary.p95_latency"], GATES["canary.error_rate"], GATES["canary.csat"]
FAITH = GATES["canary.faithfulness"]
RNG = np.random.default_rng(3)


def pairs(candidate: np.ndarray, baseline: np.ndarray) -> Pairs:
    return Pairs(
        Counter(zip(candidate.astype(float).tolist(), baseline.astype(float).tolist(), strict=True))
    )


def errors(n: int, candidate_rate: float, baseline_rate: float) -> Pairs:
    return pairs(RNG.random(n) < candidate_rate, RNG.random(n) < baseline_rate)


def order_stats(values: np.ndarray, alpha: float) -> OrderStats:
    ordered = np.sort(values)
    ranks = sorted({*quantile_ranks(len(ordered), 0.95, ALPHAS.to_fail / 2, T_STAR),
                    *quantile_ranks(len(ordered), 0.95, alpha / 2, T_STAR)})  # fmt: skip
    return OrderStats(len(ordered), {r: float(ordered[r - 1]) for r in ranks})


def test_the_error_margin_is_relative_to_the_baseline_with_a_floor() -> None:
    assert ERRORS.margin == "error rate ≤ 1.1 × baseline + 0.002"
    # 1 % → 1.5 % is a 50 % regression: not within "≤ baseline", never passes
    worse = evaluate_error_pairs(errors(200_000, 0.015, 0.01), ERRORS, alphas=ALPHAS)
    assert worse.outcome == "fail"
    assert worse.value == pytest.approx(0.015 - 1.1 * 0.01, abs=0.001)
    same = evaluate_error_pairs(errors(60_000, 0.01, 0.01), ERRORS, alphas=ALPHAS)
    assert same.outcome == "pass"
    assert same.threshold == ERRORS.floor
    assert same.ci_high is not None
    assert same.ci_high <= ERRORS.floor
    assert same.baseline == pytest.approx(0.01, abs=0.002)


def test_pairs_that_fail_together_are_cheap_to_pass() -> None:
    # both models fail the same 5 % of requests (bad inputs): no pair differs
    together = RNG.random(20_000) < 0.05
    paired = evaluate_error_pairs(pairs(together, together), ERRORS, alphas=ALPHAS)
    apart = evaluate_error_pairs(errors(20_000, 0.05, 0.05), ERRORS, alphas=ALPHAS)
    assert paired.outcome == "pass"
    assert apart.outcome == "inconclusive"
    assert paired.ci_high is not None
    assert apart.ci_high is not None
    assert paired.ci_high < apart.ci_high


def test_too_few_pairs_are_inconclusive_and_say_how_many_are_needed() -> None:
    result = evaluate_error_pairs(errors(100, 0.5, 0.0), ERRORS, alphas=ALPHAS)
    assert result.outcome == "inconclusive"
    assert result.needed_n == ERRORS.min_n


def test_an_inconclusive_gate_estimates_the_samples_it_needs() -> None:
    early = evaluate_error_pairs(errors(5_000, 0.01, 0.01), ERRORS, alphas=ALPHAS)
    assert early.outcome == "inconclusive"
    assert early.needed_n is not None
    assert early.needed_n > 5_000
    # at the needed size, with the same effect and spread, the gate decides
    later = evaluate_error_pairs(errors(3 * early.needed_n, 0.01, 0.01), ERRORS, alphas=ALPHAS)
    assert later.outcome == "pass"


def test_needed_samples_scales_the_half_width_to_the_distance() -> None:
    # value 0.5 on the passing side of 1.1 (at_most), upper bound 1.7: half-width 1.2,
    # distance 0.6, so four times the samples
    assert needed_samples(1_000, 0.5, 0.1, 1.7, P95, 1.1) == 4_000
    assert needed_samples(1_000, 1.1, 0.5, 1.7, P95, 1.1) is None  # no effect to show
    assert needed_samples(1_000, None, None, None, P95, 1.1) is None


def test_csat_pairs_against_a_margin_below_the_baseline() -> None:
    probs = [0.05, 0.1, 0.2, 0.35, 0.3]
    draw = lambda p, n: RNG.choice(5, n, p=p) + 1  # noqa: E731
    same = evaluate_paired_difference(pairs(draw(probs, 8_000), draw(probs, 8_000)), CSAT,
                                      alphas=ALPHAS, value_range=SCORE_RANGE)  # fmt: skip
    worse_p = [0.1, 0.15, 0.25, 0.3, 0.2]
    worse = evaluate_paired_difference(pairs(draw(worse_p, 8_000), draw(probs, 8_000)), CSAT,
                                       alphas=ALPHAS, value_range=SCORE_RANGE)  # fmt: skip
    assert CSAT.margin == "CSAT ≥ baseline − 0.1"
    assert (same.outcome, worse.outcome) == ("pass", "fail")
    assert same.ci_low is not None
    assert same.ci_low >= CSAT.threshold
    assert worse.ci_high is not None
    assert worse.ci_high < CSAT.threshold


def test_faithfulness_from_discrete_judge_scores() -> None:
    good = Scores(Counter((RNG.choice(5, 600, p=[0.01, 0.02, 0.05, 0.27, 0.65]) + 1.0).tolist()))
    poor = Scores(Counter((RNG.choice(5, 600, p=[0.1, 0.1, 0.3, 0.3, 0.2]) + 1.0).tolist()))
    assert evaluate_mean(good, FAITH, alphas=ALPHAS, value_range=SCORE_RANGE).outcome == "pass"
    assert evaluate_mean(poor, FAITH, alphas=ALPHAS, value_range=SCORE_RANGE).outcome == "fail"


def test_continuous_scores_are_binned_toward_the_safe_side() -> None:
    scores = RNG.uniform(3.5, 5.0, 3_000)
    exact = Scores(Counter(scores.tolist()))  # 3,000 distinct values
    result = evaluate_mean(exact, FAITH, alphas=ALPHAS, value_range=SCORE_RANGE)
    low = betting.bound(exact.counts, ALPHAS.to_pass, lo=1, hi=5, side="above")
    assert result.ci_low is not None
    assert low - 0.02 <= result.ci_low <= low  # binned down: never above the exact bound


def test_a_failed_call_is_the_slowest_latency() -> None:
    # 20 % faster when it answers, but 6 % of its calls fail: its p95 is a failure
    base = RNG.lognormal(6.7, 0.5, 20_000)
    fast = RNG.lognormal(6.7, 0.5, 20_000) * 0.8
    fast[RNG.random(20_000) < 0.06] = math.inf
    result = evaluate_quantile_ratio(order_stats(fast, ALPHAS.to_pass),
                                     order_stats(base, ALPHAS.to_pass), P95,
                                     alphas=ALPHAS, t_star=T_STAR)  # fmt: skip
    assert result.outcome == "fail"
    assert result.value is None  # infinite: not a number to store
    assert P95.margin == "p95 ≤ 1.1 × baseline (failures as slowest)"


def test_quantile_ratio_bounds_are_one_sided_per_budget() -> None:
    base = RNG.lognormal(6.7, 0.5, 20_000)
    cand = RNG.lognormal(6.7, 0.5, 20_000) * 1.3
    result = evaluate_quantile_ratio(order_stats(cand, ALPHAS.to_pass),
                                     order_stats(base, ALPHAS.to_pass), P95,
                                     alphas=ALPHAS, t_star=T_STAR)  # fmt: skip
    c_fail = quantile_cs(np.sort(cand).tolist(), 0.95, ALPHAS.to_fail / 2, t_star=T_STAR)
    b_fail = quantile_cs(np.sort(base).tolist(), 0.95, ALPHAS.to_fail / 2, t_star=T_STAR)
    c_pass = quantile_cs(np.sort(cand).tolist(), 0.95, ALPHAS.to_pass / 2, t_star=T_STAR)
    b_pass = quantile_cs(np.sort(base).tolist(), 0.95, ALPHAS.to_pass / 2, t_star=T_STAR)
    assert result.ci_low == pytest.approx(c_fail.low / b_fail.high)
    assert result.ci_high == pytest.approx(c_pass.high / b_pass.low)
    assert result.outcome == "fail"
    same = evaluate_quantile_ratio(order_stats(base, ALPHAS.to_pass),
                                   order_stats(base, ALPHAS.to_pass), P95,
                                   alphas=ALPHAS, t_star=T_STAR)  # fmt: skip
    assert same.outcome == "pass"
