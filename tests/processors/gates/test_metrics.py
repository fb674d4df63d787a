"""The one table from (stage, metric) to evaluator, and the two producers of its statistics."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from typing import cast

import numpy as np
import pytest
from clickhouse_connect.driver.client import Client

from processors.gates.evaluate import (
    SCORE_RANGE,
    Alphas,
    Evaluation,
    OfflineStats,
    OrderStats,
    Pairs,
    Scores,
    evaluate_error_pairs,
    evaluate_mean,
    evaluate_paired_difference,
    evaluate_quantile_ratio,
    from_offline,
    quantile_ranks,
    quantile_ratio_ranks,
)
from processors.gates.metrics import (
    GATE_METRICS,
    Statistic,
    evaluate_gate,
    gate_alphas,
    planned_samples,
)
from processors.gates.montecarlo import STATISTICS, ModelProfile, simulate_rollouts
from processors.gates.queries import GateQueries, Window
from shadowlab.core.plan import DEFAULT_GATES, GateSpec, RolloutSettings

ALPHAS, T_STAR = Alphas(0.005, 0.01), 5000.0
PLAN = RolloutSettings()
GATES = {g.key: g for g in DEFAULT_GATES}
SUPPORTED = sorted(f"{s}.{m}" for s, m in GATE_METRICS)
UNSUPPORTED = GateSpec(name="csat", stage="shadow", metric="csat", threshold=-0.15)


def queries() -> GateQueries:
    # never queried: every test here fails or finishes before touching the client
    return GateQueries(cast(Client, None), "db", alphas=ALPHAS, tick_s=300,
                       t_star=lambda gate: T_STAR)  # fmt: skip


def test_every_default_gate_and_both_producers_are_in_the_table() -> None:
    assert {(g.stage, g.metric) for g in DEFAULT_GATES} <= set(GATE_METRICS)
    assert set(queries().fetchers) == set(GATE_METRICS)
    assert set(STATISTICS) == set(GATE_METRICS)


def test_an_unsupported_pair_is_refused_naming_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"shadow\.csat") as raised:
        evaluate_gate(UNSUPPORTED, Pairs({}), None, alphas=ALPHAS, t_star=T_STAR)
    assert all(pair in str(raised.value) for pair in SUPPORTED)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    window = Window("r", "p", "c", start, start + dt.timedelta(hours=1))
    with pytest.raises(ValueError, match=r"supported \(stage\.metric\): canary\.csat, "):
        queries().evaluate(UNSUPPORTED, window)  # before any query: the client is None
    plan = RolloutSettings(tick_s=900, gates=(*DEFAULT_GATES, UNSUPPORTED))
    with pytest.raises(ValueError, match=r"shadow\.csat"):
        list(simulate_rollouts(ModelProfile(), rollouts=1, plan=plan, gates=plan.gates))


def test_a_statistic_of_the_wrong_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="baseline statistic must be NoneType, not Scores"):
        evaluate_gate(GATES["canary.csat"], Pairs({}), Scores({}), alphas=ALPHAS, t_star=T_STAR)
    with pytest.raises(TypeError, match="candidate statistic must be Pairs, not Scores"):
        evaluate_gate(GATES["canary.error_rate"], Scores({}), None, alphas=ALPHAS, t_star=T_STAR)


def order_stats(values: np.ndarray, gate: GateSpec) -> OrderStats:
    ordered = np.sort(values)
    ranks = quantile_ratio_ranks(gate, len(ordered), alphas=ALPHAS, t_star=T_STAR)
    return OrderStats(len(ordered), {r: float(ordered[r - 1]) for r in ranks})


def test_the_ranks_are_both_budgets_per_arm_half_ranks_of_the_gate_quantile() -> None:
    gate = GATES["canary.p95_latency"]
    assert quantile_ratio_ranks(gate, 5000, alphas=ALPHAS, t_star=T_STAR) == sorted(
        {*quantile_ranks(5000, 0.95, ALPHAS.to_fail / 2, T_STAR),
         *quantile_ranks(5000, 0.95, ALPHAS.to_pass / 2, T_STAR)}
    )  # fmt: skip


def test_alpha_is_spent_over_the_enabled_gates_that_can_make_each_error() -> None:
    alphas = gate_alphas(0.05, DEFAULT_GATES)
    # 7 live gates can fail (offline is eval's); 6 are required (preference is not)
    assert alphas == Alphas(pytest.approx(0.05 / 7), pytest.approx(0.05 / 6))  # type: ignore[arg-type]
    fewer = tuple(g for g in DEFAULT_GATES if g.metric != "preference")
    assert gate_alphas(0.05, fewer) == Alphas(pytest.approx(0.05 / 6), pytest.approx(0.05 / 6))  # type: ignore[arg-type]


def test_t_star_is_the_traffic_a_latency_window_will_hold() -> None:
    # the default plan: its last canary step is 50 %, its t_star 5,000
    shadow, canary = GATES["shadow.p95_latency"], GATES["canary.p95_latency"]
    assert planned_samples(shadow, PLAN, requests_per_h=3600) == 3600
    assert planned_samples(canary, PLAN, requests_per_h=3600) == 43_200
    assert planned_samples(canary, PLAN, requests_per_h=None) == 5000
    # at 10 requests/h the window holds fewer than min_n: tuned for min_n
    assert planned_samples(shadow, PLAN, requests_per_h=10) == 400


RNG = np.random.default_rng(7)
SCORES, PRIMARY_SCORES = (Scores(Counter((RNG.choice(5, 3_000) + 1.0).tolist())) for _ in range(2))
CSAT_PAIRS = Pairs(Counter(zip((RNG.choice(5, 3_000) + 1.0).tolist(),
                               (RNG.choice(5, 3_000) + 1.0).tolist(), strict=True)))  # fmt: skip
ERROR_PAIRS = Pairs({(0.0, 0.0): 2_940, (1.0, 0.0): 20, (0.0, 1.0): 30, (1.0, 1.0): 10})
SLOW, FAST = (
    order_stats(RNG.lognormal(6.7, 0.5, 5_000) * f, GATES["shadow.p95_latency"]) for f in (1.2, 1)
)


def direct_csat(gate: GateSpec) -> Evaluation:
    return evaluate_paired_difference(CSAT_PAIRS, gate, alphas=ALPHAS, value_range=SCORE_RANGE)


def direct_faithfulness(gate: GateSpec) -> Evaluation:
    return evaluate_mean(
        SCORES, gate, alphas=ALPHAS, value_range=SCORE_RANGE, baseline=PRIMARY_SCORES.mean
    )


def direct_latency(gate: GateSpec) -> Evaluation:
    return evaluate_quantile_ratio(SLOW, FAST, gate, alphas=ALPHAS, t_star=T_STAR)


def direct_errors(gate: GateSpec) -> Evaluation:
    return evaluate_error_pairs(ERROR_PAIRS, gate, alphas=ALPHAS)


def direct_offline(gate: GateSpec) -> Evaluation:
    return from_offline("pass", gate, 0.97)


@pytest.mark.parametrize(
    ("key", "candidate", "baseline", "direct"),
    [
        ("canary.csat", CSAT_PAIRS, None, direct_csat),
        ("canary.faithfulness", SCORES, PRIMARY_SCORES, direct_faithfulness),
        ("shadow.p95_latency", SLOW, FAST, direct_latency),
        ("shadow.error_rate", ERROR_PAIRS, None, direct_errors),
        ("offline.accuracy", OfflineStats("pass", 0.97), None, direct_offline),
    ],
)
def test_evaluate_gate_is_the_evaluator_the_table_names(
    key: str, candidate: Statistic, baseline: Statistic, direct: Callable[[GateSpec], Evaluation]
) -> None:
    gate = GATES[key]
    expected = direct(gate)
    assert evaluate_gate(gate, candidate, baseline, alphas=ALPHAS, t_star=T_STAR) == expected
    quick = evaluate_gate(gate, candidate, baseline, alphas=ALPHAS, t_star=T_STAR, interval=False)
    assert quick.outcome == expected.outcome  # the outcome needs no bisection
    assert expected.n > 0


def test_no_published_offline_outcome_is_inconclusive() -> None:
    gate = GATES["offline.accuracy"]
    evaluation = evaluate_gate(gate, OfflineStats(), None, alphas=ALPHAS, t_star=T_STAR)
    assert evaluation.outcome == "inconclusive"
