"""The manual rollout commands as pure changes (what the CLI and the admin API both apply)."""

from __future__ import annotations

import datetime as dt

import pytest
from clickhouse_connect.driver.client import Client

from schemas import GateDecision, RoutingFlags
from shadowlab.core.errors import InvalidFlagsChangeError, UnknownRouteError
from shadowlab.core.flags import set_flags
from shadowlab.rollout_ops import COMMANDS, VERBS, audit_alert, latest_decisions, manual_change
from sinks.clickhouse import insert_events

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _shadow() -> RoutingFlags:
    return set_flags(None, route="faq", primary="gpt-4", canary="gpt-4o", canary_weight_bp=0,
                     actor="t", reason="", now=NOW, stage="shadow")  # fmt: skip


def test_every_command_needs_a_reason() -> None:
    for command in COMMANDS:
        with pytest.raises(InvalidFlagsChangeError, match=f"a {command} needs a reason"):
            manual_change(command, _shadow(), route="faq", reason=" ", actor="a", now=NOW,
                          candidate="m", primary="p")  # fmt: skip


def test_start_needs_a_candidate_and_a_primary_from_somewhere() -> None:
    with pytest.raises(InvalidFlagsChangeError, match="needs the candidate"):
        manual_change("start", None, route="faq", reason="go", actor="a", now=NOW)
    with pytest.raises(InvalidFlagsChangeError, match="give the model it runs now"):
        manual_change("start", None, route="faq", reason="go", actor="a", now=NOW, candidate="c")
    started = manual_change("start", None, route="faq", reason="go", actor="a", now=NOW,
                            candidate="c", primary="p")  # fmt: skip
    assert (started.stage, started.primary, started.canary, started.version) == (
        "offline",
        "p",
        "c",
        1,
    )


def test_commands_follow_the_stage_rules() -> None:
    with pytest.raises(InvalidFlagsChangeError, match="only a canary can be promoted"):
        manual_change("promote", _shadow(), route="faq", reason="x", actor="a", now=NOW)
    with pytest.raises(UnknownRouteError):
        manual_change("pause", None, route="faq", reason="x", actor="a", now=NOW)
    paused = manual_change("pause", _shadow(), route="faq", reason="look", actor="a", now=NOW)
    assert (paused.paused, paused.version, paused.changed_by) == (True, 2, "a")
    back = manual_change("rollback", paused, route="faq", reason="bad", actor="b", now=NOW)
    assert (back.stage, back.override) == ("rolled_back", "gpt-4")


def test_the_audit_alert_says_who_did_what_and_why() -> None:
    alert = audit_alert(_shadow(), "rollback", "bob", "too slow")
    assert (alert.kind, alert.severity, alert.flags_version) == ("manual", "warning", 1)
    assert alert.message == f"faq: {VERBS['rollback']} by bob: too slow"
    assert audit_alert(_shadow(), "resume", "bob", "ok").severity == "info"


def test_the_latest_decision_of_each_gate_is_its_newest_row_nulls_included(
    clickhouse: Client, ch_db: str
) -> None:
    def decision(minute: int, outcome: str, **fields: object) -> GateDecision:
        at = NOW + dt.timedelta(minutes=minute)
        return GateDecision.parse({
            "decision_id": f"latest:canary.csat:{minute}", "route": "latest", "gate": "csat",
            "stage": "canary", "window_start": NOW, "window_end": at, "decided_at": at, "n": 10,
            "outcome": outcome, "margin": "CSAT ≥ baseline − 0.1", **fields,
        })  # fmt: skip

    insert_events(clickhouse, ch_db, [
        decision(5, "inconclusive", value=-0.2, needed_n=900, eta_h=3.5),
        decision(10, "pass"),  # decided: no value to show, nothing needed any more
    ])  # fmt: skip
    (latest,) = latest_decisions(clickhouse, ch_db, "latest")
    assert (latest["outcome"], latest["value"], latest["needed_n"], latest["eta_h"]) == (
        "pass", None, None, None,
    )  # fmt: skip
    assert latest["margin"] == "CSAT ≥ baseline − 0.1"
