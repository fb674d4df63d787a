"""The one table from (stage, metric) to evaluator, and the two producers of its statistics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import cast

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from processors.gates.evaluate import (
    SCORE_RANGE,
    Evaluation,
    MeanStats,
    OfflineStats,
    OrderStats,
    RateStats,
    evaluate_mean,
    evaluate_mean_difference,
    evaluate_paired_difference,
    evaluate_quantile_ratio,
    from_offline,
    quantile_ranks,
    quantile_ratio_ranks,
)
from processors.gates.metrics import GATE_METRICS, Statistic, evaluate_gate
from processors.gates.montecarlo import STATISTICS, ModelProfile, simulate_rollouts
from processors.gates.queries import GateQueries, Window
from shadowlab.core.plan import DEFAULT_GATES, GateSpec, RolloutSettings

ALPHA, T_STAR = 0.01, 5000.0
GATES = {g.key: g for g in DEFAULT_GATES}
SUPPORTED = sorted(f"{s}.{m}" for s, m in GATE_METRICS)
UNSUPPORTED = GateSpec(name="csat", stage="shadow", metric="csat", threshold=-0.15)


def queries() -> GateQueries:
    # never queried: every test here fails or finishes before touching the client
    return GateQueries(cast(Client, None), "db", alpha=ALPHA, t_star=T_STAR)


def test_every_default_gate_and_both_producers_are_in_the_table() -> None:
    assert {(g.stage, g.metric) for g in DEFAULT_GATES} <= set(GATE_METRICS)
    assert set(queries().fetchers) == set(GATE_METRICS)
    assert set(STATISTICS) == set(GATE_METRICS)


def test_an_unsupported_pair_is_refused_naming_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"shadow\.csat") as raised:
        evaluate_gate(UNSUPPORTED, MeanStats(), MeanStats(), alpha=ALPHA, t_star=T_STAR)
    assert all(pair in str(raised.value) for pair in SUPPORTED)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    window = Window("r", "p", "c", start, start + dt.timedelta(hours=1))
    with pytest.raises(ValueError, match=r"supported \(stage\.metric\): canary\.csat, "):
        queries().evaluate(UNSUPPORTED, window)  # before any query: the client is None
    plan = RolloutSettings(tick_s=900, gates=(*DEFAULT_GATES, UNSUPPORTED))
    with pytest.raises(ValueError, match=r"shadow\.csat"):
        list(simulate_rollouts(ModelProfile(), rollouts=1, plan=plan, gates=plan.gates))


def test_a_statistic_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="baseline statistic must be MeanStats, not RateStats"):
        evaluate_gate(GATES["canary.csat"], MeanStats(), RateStats(), alpha=ALPHA, t_star=T_STAR)


def order_stats(values: np.ndarray, gate: GateSpec) -> OrderStats:
    ordered = np.sort(values)
    ranks = quantile_ratio_ranks(gate, len(ordered), alpha=ALPHA, t_star=T_STAR)
    return OrderStats(len(ordered), {r: float(ordered[r - 1]) for r in ranks})


def test_the_ranks_are_the_per_arm_half_alpha_ranks_of_the_gate_quantile() -> None:
    gate = GATES["canary.p95_latency"]
    assert quantile_ratio_ranks(gate, 5000, alpha=ALPHA, t_star=T_STAR) == quantile_ranks(
        5000, 0.95, ALPHA / 2, T_STAR
    )


RNG = np.random.default_rng(7)
SCORES, PRIMARY_SCORES = (MeanStats.of(RNG.choice(5, 3_000) + 1.0) for _ in range(2))
PAIRS = MeanStats.of(RNG.choice([-1.0, 0.0, 1.0], 3_000, p=[0.01, 0.98, 0.01]))
SLOW, FAST = (
    order_stats(RNG.lognormal(6.7, 0.5, 5_000) * f, GATES["shadow.p95_latency"]) for f in (1.2, 1)
)


def direct_csat(gate: GateSpec) -> Evaluation:
    return evaluate_mean_difference(
        SCORES, PRIMARY_SCORES, gate, alpha=ALPHA, t_star=T_STAR, value_range=SCORE_RANGE
    )


def direct_faithfulness(gate: GateSpec) -> Evaluation:
    return evaluate_mean(
        SCORES, gate, alpha=ALPHA, t_star=T_STAR, value_range=SCORE_RANGE,
        baseline=PRIMARY_SCORES.mean,
    )  # fmt: skip


def direct_latency(gate: GateSpec) -> Evaluation:
    return evaluate_quantile_ratio(SLOW, FAST, gate, alpha=ALPHA, t_star=T_STAR)


def direct_paired(gate: GateSpec) -> Evaluation:
    return evaluate_paired_difference(PAIRS, 0.02, gate, alpha=ALPHA, t_star=T_STAR)


def direct_offline(gate: GateSpec) -> Evaluation:
    return from_offline("pass", gate, 0.97)


@pytest.mark.parametrize(
    ("key", "candidate", "baseline", "direct"),
    [
        ("canary.csat", SCORES, PRIMARY_SCORES, direct_csat),
        ("canary.faithfulness", SCORES, PRIMARY_SCORES, direct_faithfulness),
        ("shadow.p95_latency", SLOW, FAST, direct_latency),
        ("shadow.error_rate", PAIRS, RateStats(3_000, 60), direct_paired),
        ("offline.accuracy", OfflineStats("pass", 0.97), None, direct_offline),
    ],
)
def test_evaluate_gate_is_the_evaluator_the_table_names(
    key: str, candidate: Statistic, baseline: Statistic, direct: Callable[[GateSpec], Evaluation]
) -> None:
    gate = GATES[key]
    expected = direct(gate)
    assert evaluate_gate(gate, candidate, baseline, alpha=ALPHA, t_star=T_STAR) == expected
    assert expected.n > 0


def test_no_published_offline_outcome_is_inconclusive() -> None:
    gate = GATES["offline.accuracy"]
    evaluation = evaluate_gate(gate, OfflineStats(), None, alpha=ALPHA, t_star=T_STAR)
    assert evaluation.outcome == "inconclusive"
