"""The rollout's own events: routing flags, gate decisions and alerts."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from schemas._base import Count64, Event, Identifier, ModelName, RouteName, ShortText, Timestamp

Stage = Literal["offline", "shadow", "canary", "promoted", "rolled_back"]
Outcome = Literal["pass", "fail", "inconclusive"]
#: Canary weights are basis points: 10,000 = 100 %.
BasisPoints = Annotated[int, Field(ge=0, le=10_000)]


class RoutingFlags(Event):
    """The routing state of one route (``routing.flags``, keyed by route; last version wins)."""

    route: RouteName
    #: Strictly increasing per route; a reader never applies an older version over a newer.
    version: Count64
    stage: Stage
    primary: ModelName
    canary: ModelName | None = None
    canary_weight_bp: BasisPoints = 0
    #: When set, every request goes to this model (instant rollback).
    override: ModelName | None = None
    #: Mixed into the bucket hash, so each rollout draws its own canary users.
    salt: Annotated[str, Field(min_length=1, max_length=64)]
    #: Candidates replayed in shadow for this route.
    shadow_candidates: list[ModelName] = Field(default_factory=list)
    changed_at: Timestamp
    changed_by: Annotated[str, Field(min_length=1, max_length=200)]
    reason: ShortText = ""
    #: A paused rollout is left alone by the controller (manual ``rollout pause``).
    paused: bool = False
    #: Event time the current stage began (set by the rollout controller).
    stage_since: Timestamp | None = None
    #: Event time the current canary weight step began (set by the rollout controller).
    step_since: Timestamp | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.canary is not None and self.canary == self.primary:
            raise ValueError(
                "canary must differ from primary; to send everyone to one model, clear the canary"
            )
        if self.canary_weight_bp > 0 and self.canary is None:
            raise ValueError("canary_weight_bp > 0 needs a canary model")
        return self


class GateDecision(Event):
    """One evaluation of one gate over one event-time window, with every number behind it."""

    decision_id: Identifier
    route: RouteName
    gate: Annotated[str, Field(min_length=1, max_length=64)]
    stage: Stage
    window_start: Timestamp
    window_end: Timestamp
    #: The controller's clock: the event-time watermark when it decided.
    decided_at: Timestamp
    n: Count64
    value: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    outcome: Outcome
    #: What the controller did because of it.
    action: Literal["none", "hold", "advance", "promote", "rollback"] = "none"
    sql: Annotated[str, Field(max_length=20_000)] = ""
    flags_version: Count64 | None = None
    candidate: ModelName | None = None
    baseline_model: ModelName | None = None
    #: The gate's rule in words (its margin), e.g. ``error rate ≤ 1.1 × baseline + 0.002``.
    margin: Annotated[str, Field(max_length=200)] = ""
    #: An inconclusive gate's samples needed at its current effect and spread.
    needed_n: Count64 | None = None
    #: Event hours until it has them, at the traffic it has had.
    eta_h: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _window_ordered(self) -> Self:
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        return self


class Alert(Event):
    """Something on-call must know: a gate breach, a rollback, a stage held too long."""

    alert_id: Identifier
    route: RouteName
    kind: Literal[
        "gate_failed", "rolled_back", "held_too_long", "slow_decision", "promoted", "manual"
    ]
    severity: Literal["info", "warning", "critical"]
    event_time: Timestamp
    message: ShortText
    gate: str | None = None
    decision_id: Identifier | None = None
    flags_version: Count64 | None = None
