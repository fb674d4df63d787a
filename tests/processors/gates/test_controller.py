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
    # "≤ baseline" and "≥ baseline CSAT", with their margins said in words
    assert by_key["canary.error_rate"].margin == "error rate ≤ 1.1 × baseline + 0.002"
    assert by_key["canary.csat"].margin == "CSAT ≥ baseline − 0.1"
    assert by_key["canary.p95_latency"].margin == "p95 ≤ 1.1 × baseline (failures as slowest)"


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


def slow(n: int, needed: int) -> dict[str, Evaluation]:
    """Canary gates passing, but CSAT inconclusive with ``n`` of ``needed`` samples."""
    evaluations = outcomes("canary")
    evaluations["canary.csat"] = Evaluation(
        "inconclusive", n, -0.05, 3.7, -0.1, -0.2, 0.1, "CSAT ≥ baseline − 0.1", needed
    )
    return evaluations


def test_a_hold_says_how_many_samples_each_gate_needs_and_when() -> None:
    flags = flags_at("canary", weight=5000)
    result = tick(flags, slow(1_000, 3_000), 2)  # 1,000 in 2 h: 2,000 more take 4 h
    assert result.action == "hold"
    assert "canary.csat (needs ~3,000 samples, has 1,000, ETA 4.0 h)" in result.reason
    assert result.alerts == ()  # 2 + 4 h is well within max_hold_h (10 h)


def test_a_gate_that_cannot_decide_within_the_hold_alerts_early_naming_the_traffic() -> None:
    flags = flags_at("canary", weight=5000)
    result = tick(flags, slow(1_000, 20_000), 2)  # 19,000 more at 500/h: 38 h > 8 h left
    assert [a.kind for a in result.alerts] == ["slow_decision"]
    alert = result.alerts[0]
    assert alert.gate == "canary.csat"
    assert "needs ~20,000 samples, has 1,000, at 500/h that is 38 h more, 8 h are left" in (
        alert.message
    )
    assert "about 2,375 samples/h" in alert.message
    assert "CSAT ≥ baseline − 0.1" in alert.message
    # too early to tell (under 10 % of the hold), or too few samples: no alert
    assert tick(flags, slow(1_000, 20_000), 0.5).alerts == ()
    assert tick(flags, slow(100, 20_000), 2).alerts == ()
