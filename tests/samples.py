"""One valid event of every type, for tests."""

from __future__ import annotations

import datetime as dt
from typing import Any

from schemas import (
    Alert,
    Comparison,
    Event,
    FeedbackEvent,
    GateDecision,
    Judgement,
    RoutingFlags,
    ShadowResult,
)
from shadowlab.testing import sample_request
from sinks.migrations import MIGRATIONS

#: The migrations that add columns today's events carry: a test inserting today's events
#: into an older schema applies these first.
EVENT_COLUMN_MIGRATIONS = tuple(
    m for m in MIGRATIONS if m.name in ("tool calls", "unknown usage and schema matching")
)

T0 = dt.datetime(2026, 11, 20, 12, 30, 15, 123456, tzinfo=dt.UTC)


def sample_events() -> dict[str, Event]:
    """Return one valid event per type, keyed by type name."""
    request = sample_request(event_time=T0, request_id="req-1")
    common: dict[str, Any] = {"request_id": "req-1", "event_time": T0, "route": "support-answer"}
    return {
        "RequestEvent": request,
        "ShadowResult": ShadowResult.parse(
            {
                **common,
                "replayed_at": T0 + dt.timedelta(seconds=3),
                "candidate": "gpt-4o",
                "primary_model": "gpt-4",
                "answer": "Two years.",
                "latency_ms": 410.0,
                "ttft_ms": 120.0,
                "prompt_tokens": 57,
                "completion_tokens": 4,
                "cost_usd": 0.0004,
                "status": "ok",
                "attempts": 1,
            }
        ),
        "Comparison": Comparison.parse(
            {
                **common,
                "status": "joined",
                "primary_model": "gpt-4",
                "candidate_model": "gpt-4o",
                "primary_status": "ok",
                "candidate_status": "ok",
                "primary_latency_ms": 812.5,
                "candidate_latency_ms": 410.0,
                "primary_tokens": 66,
                "candidate_tokens": 61,
                "primary_cost_usd": 0.00225,
                "candidate_cost_usd": 0.0004,
                "exact_match": False,
                "similarity": 0.5,
                "length_ratio": 0.34,
                "primary_refusal": False,
                "candidate_refusal": False,
            }
        ),
        "Judgement": Judgement.parse(
            {
                **common,
                "judgement_id": "jdg-1",
                "kind": "faithfulness",
                "model": "gpt-4o",
                "arm": "shadow",
                "judge_model": "judge",
                "score": 5.0,
                "claims_total": 1,
                "claims_supported": 1,
                "judge_cost_usd": 0.001,
            }
        ),
        "FeedbackEvent": FeedbackEvent.parse(
            {
                **common,
                "feedback_id": "fb-1",
                "model": "gpt-4",
                "arm": "primary",
                "user_key": "user-42",
                "csat": 4,
                "thumbs": "up",
            }
        ),
        "RoutingFlags": RoutingFlags.parse(
            {
                "route": "support-answer",
                "version": 7,
                "stage": "canary",
                "primary": "gpt-4",
                "canary": "gpt-4o",
                "canary_weight_bp": 500,
                "salt": "r2026-11",
                "shadow_candidates": ["gpt-4o"],
                "changed_at": T0,
                "changed_by": "gates",
                "reason": "p95 gate passed",
            }
        ),
        "GateDecision": GateDecision.parse(
            {
                "decision_id": "dec-1",
                "route": "support-answer",
                "gate": "p95_latency",
                "stage": "canary",
                "window_start": T0 - dt.timedelta(hours=24),
                "window_end": T0,
                "decided_at": T0,
                "n": 86400,
                "value": 900.0,
                "baseline": 850.0,
                "threshold": 935.0,
                "ci_low": 880.0,
                "ci_high": 920.0,
                "outcome": "pass",
                "action": "advance",
                "sql": "SELECT 1",
                "flags_version": 7,
                "candidate": "gpt-4o",
                "baseline_model": "gpt-4",
            }
        ),
        "Alert": Alert.parse(
            {
                "alert_id": "al-1",
                "route": "support-answer",
                "kind": "gate_failed",
                "severity": "critical",
                "event_time": T0,
                "message": "p95 latency 131% of baseline",
                "gate": "p95_latency",
                "decision_id": "dec-1",
                "flags_version": 8,
            }
        ),
    }
