"""The rollout state machine: from the flags and this tick's gate outcomes to one action.

Pure: the clock is the event-time watermark passed in as ``now``; nothing here reads or
writes anything. :mod:`processors.gates.role` feeds it from ClickHouse and applies its
output to ``routing.flags``, ``gate.decisions`` and ``gate.alerts``.

Stages: ``offline`` → ``shadow`` → ``canary`` (weight steps) → ``promoted``, or
``rolled_back`` from any of the first three.

- Any gate's ``fail`` rolls back at once (override = primary, canary weight 0).
- ``offline`` advances to shadow when the golden-set gate passes.
- ``shadow`` advances to the first canary step when every required shadow gate passes over
  its full window and the stage has lasted its minimum.
- A canary step advances to the next weight after its minimum event-time duration while no
  gate fails (``inconclusive`` does not stop a step), but never on time alone: a step whose
  canary arm had no request holds (there was nothing to judge it by).
- At the last step, promotion needs every required canary gate to ``pass`` over its full
  window (24 h, 48 h of canary event time).
- Anything else holds; a stage or step held past ``max_hold_h`` raises one alert, and one
  that cannot decide within ``max_hold_h`` says so early: when a required gate's samples
  still needed (at its current effect and spread) would take, at the traffic it has had,
  past ``max_hold_h``, one ``slow_decision`` alert names the gate, the ETA and the traffic
  it would need.
- A paused rollout is evaluated and recorded, but never changed by the controller.

Gate windows are in event time and grow from the start of the stage, so late events are
counted at the next tick instead of being lost, and each gate's interval sequence is one
anytime-valid sequence over the stage.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from processors.gates.evaluate import Evaluation
from schemas import RoutingFlags, Stage
from shadowlab.core.flags import advance, promote, rollback
from shadowlab.core.plan import GateSpec, RolloutSettings

Action = Literal["none", "hold", "advance", "promote", "rollback"]
#: The stages in which the controller evaluates gates.
ACTIVE_STAGES = ("offline", "shadow", "canary")
CONTROLLER = "shadowlab-gates"


@dataclass(frozen=True)
class AlertNote:
    """An alert the controller raises; ``key`` makes it one alert per breach, not per tick."""

    key: str
    kind: Literal["gate_failed", "rolled_back", "held_too_long", "slow_decision", "promoted"]
    severity: Literal["info", "warning", "critical"]
    message: str
    gate: str | None = None


@dataclass(frozen=True)
class TickResult:
    """What one tick decided: the action, why, the new flags (if any) and the alerts."""

    action: Action
    reason: str
    flags: RoutingFlags | None = None
    #: The gates that caused the action (the failing gate of a rollback, say).
    gates: tuple[str, ...] = ()
    alerts: tuple[AlertNote, ...] = field(default_factory=tuple)


#: A slow-decision alert waits for this share of ``max_hold_h`` (ETAs from little data are
#: noise) and for the gate's minimum sample.
SLOW_DECISION_AFTER = 0.1


def eta_hours(evaluation: Evaluation, elapsed_h: float) -> float | None:
    """Event hours until an inconclusive gate has the samples it needs, at its rate so far.

    ``None`` when it is not inconclusive, needs nothing known, or has had no sample yet.
    """
    needed = evaluation.needed_n
    if evaluation.outcome != "inconclusive" or needed is None:
        return None
    if evaluation.n <= 0 or elapsed_h <= 0:
        return None
    return max(0.0, (needed - evaluation.n) / (evaluation.n / elapsed_h))


def window_start(flags: RoutingFlags, now: dt.datetime) -> dt.datetime:
    """Where this stage's gate windows begin: the stage's start in event time."""
    return flags.stage_since or now


def complete(gate: GateSpec, flags: RoutingFlags, now: dt.datetime) -> bool:
    """Whether the stage has covered the gate's full window (offline gates have none)."""
    if gate.stage == "offline":
        return True
    return now - window_start(flags, now) >= dt.timedelta(hours=gate.window_h)


def stage_gates(gates: tuple[GateSpec, ...], stage: str) -> tuple[GateSpec, ...]:
    """The gates evaluated in ``stage``."""
    return tuple(g for g in gates if g.stage == stage)


def step_index(flags: RoutingFlags, plan: RolloutSettings) -> int:
    """The canary step in force: the last step whose weight is at most the current weight."""
    index = 0
    for i, step in enumerate(plan.canary_steps):
        if round(step.weight_pct * 100) <= flags.canary_weight_bp:
            index = i
    return index


def decide_tick(
    flags: RoutingFlags,
    evaluations: Mapping[str, Evaluation],
    gates: tuple[GateSpec, ...],
    plan: RolloutSettings,
    now: dt.datetime,
    wall_now: dt.datetime,
    *,
    step_requests: int | None = None,
) -> TickResult:
    """Decide one tick of one route.

    Args:
        flags: the route's flags in force.
        evaluations: this tick's outcome of each gate of the current stage, by gate key.
        gates: the route's enabled gates (every stage).
        plan: the rollout settings (steps, durations, holds).
        now: the tick's event time (the watermark).
        wall_now: wall-clock time, recorded as the flags' ``changed_at``.
        step_requests: canary-arm requests since the current canary step began (``None``:
            not known, e.g. outside canary); a step with none never advances.
    """
    if flags.stage not in ACTIVE_STAGES:
        return TickResult("none", f"stage {flags.stage} is final")
    current = stage_gates(gates, flags.stage)
    failed = tuple(g.key for g in current if _outcome(evaluations, g) == "fail")
    if flags.paused:
        alerts = tuple(_failed_alert(flags, key, evaluations, paused=True) for key in failed)
        return TickResult("none", "paused by hand", gates=failed, alerts=alerts)
    if failed:
        return _rollback(flags, failed, evaluations, now, wall_now)
    idle_step = flags.stage == "canary" and step_requests == 0
    move = None if idle_step else _advance(flags, current, evaluations, plan, now, wall_now)
    if move is not None:
        return move
    held = _hold(flags, current, evaluations, plan, now)
    if idle_step:
        why = f"the canary arm had no requests at {flags.canary_weight_bp / 100:g}% yet"
        return dataclasses.replace(held, reason=f"{why}; {held.reason}")
    return held


def _outcome(evaluations: Mapping[str, Evaluation], gate: GateSpec) -> str:
    evaluation = evaluations.get(gate.key)
    return evaluation.outcome if evaluation is not None else "inconclusive"


def _describe(key: str, evaluation: Evaluation | None) -> str:
    if evaluation is None:
        return key
    interval = (
        f" [{evaluation.ci_low:.4g}, {evaluation.ci_high:.4g}]"
        if evaluation.ci_low is not None and evaluation.ci_high is not None
        else ""
    )
    value = f"{evaluation.value:.4g}" if evaluation.value is not None else "n/a"
    rule = f"; rule {evaluation.margin}" if evaluation.margin else ""
    return (
        f"{key} = {value}{interval} vs threshold {evaluation.threshold:g} (n={evaluation.n}{rule})"
    )


def _failed_alert(
    flags: RoutingFlags, key: str, evaluations: Mapping[str, Evaluation], *, paused: bool
) -> AlertNote:
    suffix = "; the rollout is paused, so nothing was changed" if paused else ""
    return AlertNote(
        key=f"{flags.route}:v{flags.version}:{key}:failed",
        kind="gate_failed",
        severity="critical",
        message=f"{flags.route}: gate failed: {_describe(key, evaluations.get(key))}{suffix}",
        gate=key,
    )


def _rollback(
    flags: RoutingFlags,
    failed: tuple[str, ...],
    evaluations: Mapping[str, Evaluation],
    now: dt.datetime,
    wall_now: dt.datetime,
) -> TickResult:
    reason = "gate failed: " + "; ".join(_describe(k, evaluations.get(k)) for k in failed)
    new = rollback(
        flags, route=flags.route, actor=CONTROLLER, reason=reason[:2000], now=wall_now,
        event_time=now,
    )  # fmt: skip
    alerts = (
        *(_failed_alert(flags, key, evaluations, paused=False) for key in failed),
        AlertNote(
            key=f"{flags.route}:v{new.version}:rolled_back",
            kind="rolled_back",
            severity="critical",
            message=f"{flags.route}: rolled back {flags.canary} to {flags.primary} "
            f"(was {flags.stage} at {flags.canary_weight_bp / 100:g}%): {reason}"[:2000],
        ),
    )
    return TickResult("rollback", reason, new, failed, alerts)


def _all_pass(
    gates: tuple[GateSpec, ...], evaluations: Mapping[str, Evaluation], flags: RoutingFlags,
    now: dt.datetime,
) -> bool:  # fmt: skip
    return all(
        _outcome(evaluations, g) == "pass" and complete(g, flags, now) for g in gates if g.required
    )


def _move(
    flags: RoutingFlags,
    stage: Stage,
    weight: int,
    now: dt.datetime,
    wall_now: dt.datetime,
    why: str,
) -> RoutingFlags:
    reason = f"{why}: canary at {weight / 100:g}%" if stage == "canary" else why
    return advance(flags, stage=stage, weight=weight, event_time=now, actor=CONTROLLER,
                   reason=reason, now=wall_now)  # fmt: skip


def _advance(  # noqa: PLR0911 - one return per transition
    flags: RoutingFlags,
    current: tuple[GateSpec, ...],
    evaluations: Mapping[str, Evaluation],
    plan: RolloutSettings,
    now: dt.datetime,
    wall_now: dt.datetime,
) -> TickResult | None:
    steps = plan.canary_steps
    if flags.stage == "offline":
        if not _all_pass(current, evaluations, flags, now):
            return None
        new = _move(flags, "shadow", 0, now, wall_now, "offline gate passed: shadow replay begins")
        return TickResult("advance", new.reason, new, tuple(g.key for g in current))
    since = flags.step_since or now
    if flags.stage == "shadow":
        long_enough = now - since >= dt.timedelta(hours=plan.shadow_min_duration_h)
        if not (long_enough and _all_pass(current, evaluations, flags, now)):
            return None
        weight = round(steps[0].weight_pct * 100)
        new = _move(flags, "canary", weight, now, wall_now, "shadow gates passed")
        return TickResult("advance", new.reason, new, tuple(g.key for g in current))
    index = step_index(flags, plan)
    if now - since < dt.timedelta(hours=steps[index].min_duration_h):
        return None
    if index + 1 < len(steps):
        weight = round(steps[index + 1].weight_pct * 100)
        new = _move(flags, "canary", weight, now, wall_now, "no canary gate failed")
        return TickResult("advance", new.reason, new)
    if not _all_pass(current, evaluations, flags, now):
        return None
    new = promote(flags, route=flags.route, actor=CONTROLLER, now=wall_now, event_time=now,
                  reason="every canary gate passed over its full window")  # fmt: skip
    alert = AlertNote(
        key=f"{flags.route}:v{new.version}:promoted",
        kind="promoted",
        severity="info",
        message=f"{flags.route}: promoted {flags.canary} (replacing {flags.primary})",
    )
    return TickResult("promote", new.reason, new, tuple(g.key for g in current), (alert,))


def _waiting_note(key: str, evaluation: Evaluation | None, elapsed_h: float) -> str:
    if evaluation is None or evaluation.needed_n is None:
        return key
    eta = eta_hours(evaluation, elapsed_h)
    when = f", ETA {eta:.1f} h" if eta is not None else ""
    return f"{key} (needs ~{evaluation.needed_n:,} samples, has {evaluation.n:,}{when})"


def _slow_alert(
    flags: RoutingFlags,
    gate: GateSpec,
    evaluation: Evaluation | None,
    plan: RolloutSettings,
    *,
    elapsed_h: float,
    held_h: float,
) -> AlertNote | None:
    """An early warning: ``gate`` will not decide before the hold runs out at this traffic."""
    if (
        evaluation is None
        or evaluation.n < gate.min_n
        or held_h < SLOW_DECISION_AFTER * plan.max_hold_h
    ):
        return None
    eta = eta_hours(evaluation, elapsed_h)
    left = plan.max_hold_h - held_h
    if eta is None or eta <= left or evaluation.needed_n is None:
        return None
    rate = evaluation.n / elapsed_h
    wanted = (evaluation.needed_n - evaluation.n) / max(left, 1e-9)
    return AlertNote(
        key=f"{flags.route}:v{flags.version}:{gate.key}:slow",
        kind="slow_decision",
        severity="warning",
        message=f"{flags.route}: {gate.key} cannot decide within max_hold_h "
        f"({plan.max_hold_h:g} h): it needs ~{evaluation.needed_n:,} samples, has "
        f"{evaluation.n:,}, at {rate:,.0f}/h that is {eta:.0f} h more, {left:.0f} h are left; "
        f"it would need about {wanted:,.0f} samples/h (rule: {gate.margin})",
        gate=gate.key,
    )


def _hold(
    flags: RoutingFlags,
    current: tuple[GateSpec, ...],
    evaluations: Mapping[str, Evaluation],
    plan: RolloutSettings,
    now: dt.datetime,
) -> TickResult:
    waiting = tuple(
        g
        for g in current
        if g.required and (_outcome(evaluations, g) != "pass" or not complete(g, flags, now))
    )
    elapsed_h = (now - window_start(flags, now)).total_seconds() / 3600
    notes = [_waiting_note(g.key, evaluations.get(g.key), elapsed_h) for g in waiting]
    reason = "waiting for " + (", ".join(notes) if notes else "the step's minimum duration")
    since = flags.step_since or flags.stage_since or now
    held_h = (now - since).total_seconds() / 3600
    alerts: list[AlertNote] = []
    if held_h > plan.max_hold_h:
        alerts.append(
            AlertNote(
                key=f"{flags.route}:v{flags.version}:held",
                kind="held_too_long",
                severity="warning",
                message=f"{flags.route}: {flags.stage} held for more than {plan.max_hold_h:g} h "
                f"of event time; {reason}",
            )
        )
    else:
        for gate in waiting:
            note = _slow_alert(flags, gate, evaluations.get(gate.key), plan,
                               elapsed_h=elapsed_h, held_h=held_h)  # fmt: skip
            if note is not None:
                alerts.append(note)
    return TickResult("hold", reason, gates=tuple(g.key for g in waiting), alerts=tuple(alerts))
