"""A synthetic 72-hour rollout that ends in a rollback, as the events shadowlab stores.

Used by the report tests and ``scripts/report_screenshot.py``. The story (event time from
``T0``): flags at stage offline before the data starts; shadow from 2 h; canary 5 % at 8 h,
25 % at 14 h, 50 % at 26 h; rolled back at 40 h by ``canary.p95_latency`` (the candidate is
about 30 % slower); the override serves everyone afterwards. Every hour the gates of the
stage in force are decided (hold), and the ticks that moved the rollout carry its action.
Some texts carry HTML (``<script>``), to check that the report escapes them (not with
``markup=False``, for pictures).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from schemas import (
    Comparison,
    FeedbackEvent,
    GateDecision,
    Judgement,
    RequestEvent,
    RoutingFlags,
)
from shadowlab.testing import sample_request
from sinks.clickhouse import insert_events

ROUTE = "support-answer"
T0 = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
HOURS = 72
PRIMARY, CANDIDATE = "gpt-4", "gpt-4o"
#: (hour, stage, weight in basis points) of each controller change, and the gates that
#: moved it.
STEPS = ((2, "shadow", 0), (8, "canary", 500), (14, "canary", 2500), (26, "canary", 5000),
         (40, "rolled_back", 0))  # fmt: skip
ROLLBACK_HOUR = 40
PLAIN_REASON = "gate failed: canary.p95_latency = 1.31 [1.2, 1.4] vs threshold 1.1 (n=900)"
ROLLBACK_REASON = f"{PLAIN_REASON} <script>alert('reason')</script>"
#: A gate name with markup (gate names are free text up to 64 characters).
ODD_GATE = "<script>alert(1)</script>"
_GATES = {
    "offline": ("accuracy",),
    "shadow": ("error_rate", "p95_latency"),
    "canary": ("csat", "error_rate", "faithfulness", "p95_latency"),
}


def at(hours: float) -> dt.datetime:
    """Event time ``hours`` after ``T0``."""
    return T0 + dt.timedelta(hours=hours)


@dataclass
class Rollout:
    """The rollout's events by type."""

    requests: list[RequestEvent] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)
    feedback: list[FeedbackEvent] = field(default_factory=list)
    flags: list[RoutingFlags] = field(default_factory=list)
    decisions: list[GateDecision] = field(default_factory=list)

    def batches(self) -> list[list[Any]]:
        """One list per event type, for ``insert_events``."""
        return [self.requests, self.comparisons, self.judgements, self.feedback, self.flags,
                self.decisions]  # fmt: skip


def stage_at(hours: float) -> tuple[str, int]:
    """The stage and canary weight (basis points) in force ``hours`` after T0."""
    stage, weight = "offline", 0
    for hour, step_stage, step_weight in STEPS:
        if hours >= hour:
            stage, weight = step_stage, step_weight
    return stage, weight


def _flags(*, markup: bool) -> list[RoutingFlags]:
    common: dict[str, Any] = {"route": ROUTE, "salt": "s1", "changed_by": "shadowlab-gates"}
    before = T0 - dt.timedelta(days=1)
    out = [
        RoutingFlags.parse({**common, "version": 1, "stage": "promoted", "primary": PRIMARY,
                            "changed_at": before, "changed_by": "alice"}),
        RoutingFlags.parse({**common, "version": 2, "stage": "offline", "primary": PRIMARY,
                            "canary": CANDIDATE, "shadow_candidates": [CANDIDATE],
                            "changed_at": before, "reason": "cheaper",
                            "changed_by": "ops <b>bob</b>" if markup else "bob"}),
    ]  # fmt: skip
    for version, (hour, stage, weight) in enumerate(STEPS, start=3):
        rolled_back = stage == "rolled_back"
        out.append(
            RoutingFlags.parse(
                {**common, "version": version, "stage": stage, "primary": PRIMARY,
                 "canary": CANDIDATE, "canary_weight_bp": weight,
                 "override": PRIMARY if rolled_back else None,
                 "changed_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),  # wall clock: not used
                 "reason": (ROLLBACK_REASON if markup else PLAIN_REASON) if rolled_back
                 else f"advance to {stage}",
                 "stage_since": at(hour), "step_since": at(hour)}
            )
        )  # fmt: skip
    return out


def _decision(hour: int, stage: str, gate: str, outcome: str, action: str) -> GateDecision:
    stage_start = max((h for h, s, _ in STEPS if s == stage and h <= hour), default=0)
    return GateDecision.parse(
        {"decision_id": f"{ROUTE}:{stage}.{gate}:{hour}", "route": ROUTE, "gate": gate,
         "stage": stage, "window_start": at(stage_start), "window_end": at(hour),
         "decided_at": at(hour), "n": 100 * hour + len(gate), "value": 1.0 + hour / 1000,
         "baseline": 800.0 + hour, "threshold": 1.1, "ci_low": 0.9, "ci_high": 1.2 + hour / 100,
         "outcome": outcome, "action": action, "candidate": CANDIDATE, "baseline_model": PRIMARY}
    )  # fmt: skip


def _decisions(*, markup: bool) -> list[GateDecision]:
    moves = {hour: stage for hour, stage, _ in STEPS}
    out: list[GateDecision] = []
    for hour in range(1, ROLLBACK_HOUR + 1):
        stage, _ = stage_at(hour - 1e-9)  # the stage decided on at this tick
        for gate in _GATES[stage]:
            if hour == ROLLBACK_HOUR:
                failed = gate == "p95_latency"
                outcome, action = ("fail", "rollback") if failed else ("inconclusive", "none")
            elif hour in moves:
                outcome, action = "pass", "advance"
            else:
                outcome, action = "inconclusive", "hold"
            out.append(_decision(hour, stage, gate, outcome, action))
    if markup:
        out.append(_decision(30, "canary", ODD_GATE, "inconclusive", "hold"))
    return out


def _call(rng: np.random.Generator, median_ms: float, error_rate: float) -> tuple[float, str]:
    latency = round(float(rng.lognormal(math.log(median_ms), 0.35)), 3)
    return latency, "error" if rng.random() < error_rate else "ok"


def rollout(seed: int = 0, per_hour: int = 120, *, markup: bool = True) -> Rollout:
    """The rollout's events: ``per_hour`` requests per hour of event time for 72 hours.

    With ``markup``, a flags reason, an author and a gate name carry HTML.
    """
    rng = np.random.default_rng(seed)
    out = Rollout(flags=_flags(markup=markup), decisions=_decisions(markup=markup))
    offsets = np.sort(rng.uniform(0, HOURS * 3600, size=HOURS * per_hour))
    for i, offset in enumerate(offsets):
        t = T0 + dt.timedelta(seconds=float(offset))
        stage, weight = stage_at(offset / 3600)
        arm = "override" if stage == "rolled_back" else (
            "canary" if rng.random() < weight / 10_000 else "primary")  # fmt: skip
        request = _request(rng, i, t, arm)
        out.requests.append(request)
        if stage in ("shadow", "canary") and arm == "primary":
            out.comparisons.append(_comparison(rng, request))
        if rng.random() < 0.25:
            out.judgements.append(_judgement(rng, request))
        if rng.random() < 0.25:
            out.feedback.append(_feedback(rng, request))
    return out


def _request(rng: np.random.Generator, i: int, t: dt.datetime, arm: str) -> RequestEvent:
    canary = arm == "canary"
    latency, status = _call(rng, 1040.0 if canary else 800.0, 0.03 if canary else 0.02)
    return sample_request(
        request_id=f"req-{i}", event_time=t, route=ROUTE, arm=arm,
        model=CANDIDATE if canary else PRIMARY, latency_ms=latency, status=status,
        error_type=None if status == "ok" else "APIError",
        answer="ok" if status == "ok" else None,
    )  # fmt: skip


def _comparison(rng: np.random.Generator, request: RequestEvent) -> Comparison:
    if rng.random() < 0.02:
        return Comparison.parse(
            {"request_id": request.request_id, "event_time": request.event_time, "route": ROUTE,
             "status": "missing", "primary_model": PRIMARY, "candidate_model": CANDIDATE,
             "primary_status": request.status, "primary_latency_ms": request.latency_ms}
        )  # fmt: skip
    latency, status = _call(rng, 1040.0, 0.03)
    return Comparison.parse(
        {"request_id": request.request_id, "event_time": request.event_time, "route": ROUTE,
         "status": "joined", "primary_model": PRIMARY, "candidate_model": CANDIDATE,
         "primary_status": request.status, "candidate_status": status,
         "primary_latency_ms": request.latency_ms, "candidate_latency_ms": latency}
    )  # fmt: skip


def _judgement(rng: np.random.Generator, request: RequestEvent) -> Judgement:
    mean = 4.1 if request.arm == "canary" else 4.4
    score = float(np.clip(round(rng.normal(mean, 0.5) * 4) / 4, 1, 5))
    return Judgement.parse(
        {"judgement_id": f"j-{request.request_id}", "request_id": request.request_id,
         "event_time": request.event_time, "route": ROUTE, "kind": "faithfulness",
         "model": request.model, "arm": request.arm, "judge_model": "judge", "score": score}
    )  # fmt: skip


def _feedback(rng: np.random.Generator, request: RequestEvent) -> FeedbackEvent:
    mean = 3.6 if request.arm == "canary" else 3.9
    csat = int(np.clip(round(rng.normal(mean, 0.9)), 1, 5))
    known = rng.random() < 0.9
    return FeedbackEvent.parse(
        {"feedback_id": f"f-{request.request_id}", "request_id": request.request_id,
         "event_time": request.event_time, "route": ROUTE, "csat": csat,
         "model": request.model if known else None, "arm": request.arm if known else None}
    )  # fmt: skip


def insert(client: Any, database: str, events: Rollout) -> None:
    """Store every event of ``events`` in ``database``."""
    for batch in events.batches():
        insert_events(client, database, batch)
