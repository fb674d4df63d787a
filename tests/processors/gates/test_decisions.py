"""Decision quality over simulated rollouts (fixed seeds), through the real controller.

1 request per second of event time; gates re-checked on every tick (15 min here, to keep
the suite fast; ``bench/decisions.py`` runs the default 5 min tick). The user's default
gates, margins and canary steps.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from processors.gates.montecarlo import ModelProfile, RolloutOutcome, simulate_rollouts, slower
from shadowlab.core.plan import RolloutSettings, route_gates

PLAN = RolloutSettings(tick_s=900)
GATES = route_gates(PLAN)
ROLLOUTS = 200


def run(candidate: ModelProfile, **kwargs: object) -> list[RolloutOutcome]:
    return list(
        simulate_rollouts(candidate, rollouts=ROLLOUTS, plan=PLAN, gates=GATES, seed=11, **kwargs)  # type: ignore[arg-type]
    )


def before_canary_window_ends(outcome: RolloutOutcome) -> bool:
    if outcome.outcome != "rolled_back":
        return False
    return outcome.canary_hours is None or outcome.hours < outcome.canary_hours + 24


def test_an_identical_candidate_is_rarely_failed_and_mostly_promoted_within_72h() -> None:
    outcomes = run(ModelProfile())
    failed = sum(o.outcome == "rolled_back" for o in outcomes)
    promoted = sum(o.outcome == "promoted" and o.hours <= 72 for o in outcomes)
    assert failed / ROLLOUTS <= 0.05, [o for o in outcomes if o.outcome == "rolled_back"]
    assert promoted / ROLLOUTS >= 0.80
    # promotion waits for CSAT's full 48 h of canary, and no longer than it must
    assert all(o.hours >= 48 for o in outcomes if o.outcome == "promoted")


def test_a_30_percent_slower_candidate_is_rolled_back_before_its_canary_window_ends() -> None:
    outcomes = run(slower(ModelProfile(), 1.3))
    assert sum(map(before_canary_window_ends, outcomes)) / ROLLOUTS >= 0.90
    assert {o.gates for o in outcomes} == {("shadow.p95_latency",)}


def test_a_regression_only_live_traffic_shows_is_caught_by_the_canary_p95_gate() -> None:
    outcomes = run(slower(ModelProfile(), 1.3), shadow_candidate=ModelProfile())
    assert sum(map(before_canary_window_ends, outcomes)) / ROLLOUTS >= 0.90
    assert all(o.stage == "canary" for o in outcomes if o.outcome == "rolled_back")
    assert {o.gates for o in outcomes if o.outcome == "rolled_back"} == {("canary.p95_latency",)}


@pytest.mark.parametrize(
    ("candidate", "gate"),
    [
        (replace(ModelProfile(), error_rate=0.03), "canary.error_rate"),
        (replace(ModelProfile(), csat=(0.1, 0.15, 0.25, 0.3, 0.2)), "canary.csat"),
        (replace(ModelProfile(), faithfulness_mean=3.6), "canary.faithfulness"),
    ],
    ids=["error-rate", "csat", "faithfulness"],
)
def test_each_canary_gate_rolls_back_its_own_regression(candidate: ModelProfile, gate: str) -> None:
    runs = simulate_rollouts(
        candidate, rollouts=40, plan=PLAN, gates=GATES, seed=5, shadow_candidate=ModelProfile()
    )
    outcomes = list(runs)
    assert all(o.outcome == "rolled_back" and o.gates == (gate,) for o in outcomes)
