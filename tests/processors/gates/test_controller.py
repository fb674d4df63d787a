"""The rollout state machine, tick by tick (pure: no broker, no ClickHouse)."""

from __future__ import annotations

import datetime as dt

import pytest

from processors.gates.controller import decide_tick, stage_gates
from processors.gates.evaluate import Evaluation
from schemas import RoutingFlags
from shadowlab.core.errors import InvalidFlagsChangeError
from shadowlab.core.flags import promote, set_paused, start_rollout
from shadowlab.core.plan import CanaryStep, GateOverride, GateSpec, RolloutSettings, route_gates

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
PLAN = RolloutSettings(
    shadow_min_duration_h=1,
    canary_steps=(CanaryStep(weight_pct=1, min_duration_h=1), CanaryStep(weight_pct=50)),
    max_hold_h=10,
)
GATES = route_gates(PLAN)


def hours(h: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def flags_at(stage: str, weight: int = 0, since: float = 0.0, **extra: object) -> RoutingFlags:
    data: dict[str, object] = {
        "route": "support-answer",
        "version": 7,
        "stage": stage,
        "primary": "gpt-4",
        "canary": "gpt-4o",
        "canary_weight_bp": weight,
        "salt": "s",
        "changed_at": T0,
        "changed_by": "test",
        "stage_since": hours(since),
        "step_since": hours(since),
    }
    data.update(extra)
    return RoutingFlags.parse(data)


def outcomes(stage: str, default: str = "pass", **by_name: str) -> dict[str, Evaluation]:
    return {
        g.key: Evaluation(by_name.get(g.name, default), 500, 1.0, 1.0, g.threshold, 0.9, 1.05)  # type: ignore[arg-type]
        for g in stage_gates(GATES, stage)
    }


def tick(flags: RoutingFlags, evaluations: dict[str, Evaluation], at: float):  # type: ignore[no-untyped-def]
    return decide_tick(flags, evaluations, GATES, PLAN, hours(at), hours(at))


def test_offline_pass_starts_shadow_and_records_event_time() -> None:
    result = tick(flags_at("offline"), outcomes("offline"), 0.5)
    assert result.action == "advance"
    assert result.flags is not None
    assert (result.flags.stage, result.flags.canary_weight_bp) == ("shadow", 0)
    assert result.flags.stage_since == result.flags.step_since == hours(0.5)
    assert result.flags.version == 8


def test_offline_without_a_result_holds() -> None:
    result = tick(flags_at("offline"), outcomes("offline", "inconclusive"), 3)
    assert (result.action, result.flags) == ("hold", None)
    assert result.gates == ("offline.accuracy",)


def test_shadow_waits_for_its_minimum_duration_and_full_windows() -> None:
    early = tick(flags_at("shadow"), outcomes("shadow"), 0.5)
    assert early.action == "hold"
    result = tick(flags_at("shadow"), outcomes("shadow"), 1.0)
    assert result.action == "advance"
    assert result.flags is not None
    assert (result.flags.stage, result.flags.canary_weight_bp) == ("canary", 100)


def test_an_optional_gate_does_not_hold_shadow() -> None:
    result = tick(flags_at("shadow"), outcomes("shadow", preference="inconclusive"), 1.0)
    assert result.action == "advance"


def test_any_fail_rolls_back_at_once_with_override_and_alerts() -> None:
    flags = flags_at("canary", weight=100)
    result = tick(flags, outcomes("canary", "inconclusive", p95_latency="fail"), 0.2)
    assert result.action == "rollback"
    assert result.flags is not None
    assert result.flags.stage == "rolled_back"
    assert result.flags.override == "gpt-4"
    assert result.flags.canary_weight_bp == 0
    assert result.gates == ("canary.p95_latency",)
    assert {a.kind for a in result.alerts} == {"gate_failed", "rolled_back"}
    assert "canary.p95_latency" in result.flags.reason


def test_canary_step_advances_after_its_duration_while_inconclusive() -> None:
    flags = flags_at("canary", weight=100)
    assert tick(flags, outcomes("canary", "inconclusive"), 0.9).action == "hold"
    result = tick(flags, outcomes("canary", "inconclusive"), 1.0)
    assert result.action == "advance"
    assert result.flags is not None
    assert result.flags.canary_weight_bp == 5000
    assert result.flags.stage_since == hours(0)  # the canary's windows keep their start
    assert result.flags.step_since == hours(1.0)


def test_promotion_needs_every_gate_to_pass_over_its_full_window() -> None:
    flags = flags_at("canary", weight=5000)
    # 24 h gates pass and are complete, but CSAT's 48 h window is not covered yet
    assert tick(flags, outcomes("canary"), 30).action == "hold"
    # covered, but one gate is only inconclusive
    assert tick(flags, outcomes("canary", csat="inconclusive"), 48).action == "hold"
    result = tick(flags, outcomes("canary"), 48)
    assert result.action == "promote"
    assert result.flags is not None
    assert (result.flags.stage, result.flags.primary, result.flags.canary) == (
        "promoted",
        "gpt-4o",
        None,
    )


def test_paused_rollout_is_never_changed_but_a_fail_still_alerts() -> None:
    flags = flags_at("canary", weight=5000, paused=True)
    assert tick(flags, outcomes("canary"), 60).action == "none"
    result = tick(flags, outcomes("canary", error_rate="fail"), 60)
    assert (result.action, result.flags) == ("none", None)
    assert [a.kind for a in result.alerts] == ["gate_failed"]


def test_held_past_the_maximum_alerts_with_one_key_per_step() -> None:
    flags = flags_at("shadow")
    first = tick(flags, outcomes("shadow", "inconclusive"), 11)
    again = tick(flags, outcomes("shadow", "inconclusive"), 12)
    assert [a.kind for a in first.alerts] == ["held_too_long"]
    assert first.alerts[0].key == again.alerts[0].key
    assert tick(flags, outcomes("shadow", "inconclusive"), 9).alerts == ()


@pytest.mark.parametrize("stage", ["promoted", "rolled_back"])
def test_final_stages_take_no_action(stage: str) -> None:
    flags = flags_at(stage, canary=None, stage_since=None, step_since=None)
    assert tick(flags, {}, 5).action == "none"


def test_promotion_never_skips_shadow_or_canary() -> None:
    started = start_rollout(
        None, route="r", candidate="b", primary="a", actor="me", reason="go", now=T0
    )
    assert started.stage == "offline"
    with pytest.raises(InvalidFlagsChangeError, match="only a canary can be promoted"):
        promote(started, route="r", actor="me", reason="now", now=T0)
    # the controller itself needs a passing shadow stage before any canary weight
    shadow = flags_at("shadow")
    result = tick(shadow, outcomes("shadow"), 0.5)
    assert result.action == "hold"


def test_pause_and_resume_need_a_reason_and_a_rollout() -> None:
    flags = flags_at("canary", weight=100)
    paused = set_paused(flags, route=flags.route, paused=True, actor="a", reason="why", now=T0)
    assert paused.paused
    with pytest.raises(InvalidFlagsChangeError, match="already paused"):
        set_paused(paused, route=flags.route, paused=True, actor="a", reason="why", now=T0)
    with pytest.raises(InvalidFlagsChangeError, match="needs a reason"):
        set_paused(paused, route=flags.route, paused=False, actor="a", reason=" ", now=T0)
    done = flags_at("promoted", canary=None)
    with pytest.raises(InvalidFlagsChangeError, match="no rollout"):
        set_paused(done, route=flags.route, paused=True, actor="a", reason="why", now=T0)


def test_route_overrides_change_one_gate_and_unknown_names_are_refused() -> None:
    gates = route_gates(
        PLAN,
        {
            "canary.p95_latency": GateOverride(threshold=1.2),
            "preference": GateOverride(enabled=False),
        },
    )
    by_key = {g.key: g for g in gates}
    assert by_key["canary.p95_latency"].threshold == 1.2
    assert by_key["shadow.p95_latency"].threshold == 1.10
    assert "shadow.preference" not in by_key
    with pytest.raises(ValueError, match="name no gate"):
        route_gates(PLAN, {"canary.nope": GateOverride()})


def test_defaults_are_the_users_promotion_criteria() -> None:
    by_key: dict[str, GateSpec] = {g.key: g for g in RolloutSettings().gates}
    expected = {
        "offline.accuracy": (0.95, "at_least"),
        "canary.faithfulness": (4.0, "at_least"),
        "canary.p95_latency": (1.10, "at_most"),
    }
    for key, (threshold, direction) in expected.items():
        assert (by_key[key].threshold, by_key[key].direction) == (threshold, direction)
    assert by_key["canary.p95_latency"].window_h == 24
    assert by_key["canary.error_rate"].window_h == 24
    assert by_key["canary.csat"].window_h == 48


def test_a_canary_step_whose_arm_had_no_requests_never_advances_on_time_alone() -> None:
    flags = flags_at("canary", weight=100)
    evaluations = outcomes("canary", "inconclusive")
    idle = decide_tick(flags, evaluations, GATES, PLAN, hours(30), hours(30), step_requests=0)
    assert (idle.action, idle.flags) == ("hold", None)
    assert idle.reason.startswith("the canary arm had no requests at 1% yet")
    busy = decide_tick(flags, evaluations, GATES, PLAN, hours(1), hours(1), step_requests=12)
    assert busy.action == "advance"
    failing = outcomes("canary", "inconclusive", error_rate="fail")
    assert decide_tick(flags, failing, GATES, PLAN, hours(1), hours(1), step_requests=0).action == (
        "rollback"
    )  # a failing gate still rolls back at once
