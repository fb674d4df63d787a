"""The offline gate's repeated-test rule: the golden set's digest, the policy, the history."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from clickhouse_connect.driver.client import Client

from processors.evaluation.golden import GoldenItem, parse_golden
from processors.evaluation.reruns import (
    MAX_REASON_CHARS,
    EarlierRun,
    Rerun,
    audit_lines,
    digest_line,
    earlier_runs,
    golden_digest,
    rerun_alert,
    rerun_policy,
)
from schemas import GateDecision
from shadowlab.core.errors import ConfigError, GoldenSetReusedError
from sinks.clickhouse import insert_events

ITEMS = [
    GoldenItem(id="a", question="How long is the warranty?", keywords=["two years"]),
    GoldenItem(id="b", question="Which colour?", keywords=["green"], context=["It is green."]),
    GoldenItem(id="c", question="Where?", keywords=["Lisbon"], expected="Lisbon"),
]
T0 = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)


def _digest_of_lines(lines: list[str]) -> str:
    items, _ = parse_golden(lines)
    return golden_digest(items)


# -- the digest --------------------------------------------------------------------------


def test_the_digest_is_of_the_items_not_of_the_file_layout() -> None:
    lines = [i.model_dump_json() for i in ITEMS]
    reordered = [lines[2], "", lines[0], "{not json", lines[1]]
    keys_reordered = [json.dumps(dict(reversed(json.loads(line).items()))) for line in lines]
    defaults_omitted = [
        json.dumps({"id": "a", "question": "How long is the warranty?", "keywords": ["two years"]}),
        lines[1],
        lines[2],
    ]
    digest = golden_digest(ITEMS)
    assert len(digest) == 64
    assert int(digest, 16) >= 0
    for variant in (reordered, keys_reordered, defaults_omitted):
        assert _digest_of_lines(variant) == digest


@pytest.mark.parametrize(
    "changed",
    [
        ITEMS[:2],  # an item fewer
        [*ITEMS, GoldenItem(id="d", question="New?", keywords=["x"])],  # an item more
        [ITEMS[0].model_copy(update={"question": "How long is the guarantee?"}), *ITEMS[1:]],
        [ITEMS[0].model_copy(update={"keywords": ["2 years"]}), *ITEMS[1:]],
        [ITEMS[0], ITEMS[1].model_copy(update={"context": ["It is blue."]}), ITEMS[2]],
        [*ITEMS[:2], ITEMS[2].model_copy(update={"expected": "Porto"})],
        [ITEMS[0].model_copy(update={"id": "a2"}), *ITEMS[1:]],
    ],
)
def test_any_change_to_an_item_makes_a_new_golden_set(changed: list[GoldenItem]) -> None:
    assert golden_digest(changed) != golden_digest(ITEMS)


# -- the policy --------------------------------------------------------------------------

EARLIER = [
    EarlierRun("eval-20250301T080000-aaaa0000", T0 - dt.timedelta(hours=1), "fail", 0.91),
    EarlierRun("eval-20250301T093000-bbbb1111", T0, "inconclusive", None),
]


def _policy(earlier: list[EarlierRun], reason: str | None) -> Rerun | None:
    return rerun_policy(earlier, route="faq", candidate="gpt-4o", digest="ab" * 32,
                        golden_file="golden.jsonl", reason=reason, actor="alice")  # fmt: skip


def test_a_first_run_needs_no_reason_and_records_none() -> None:
    assert _policy([], None) is None
    assert _policy([], "a reason nobody needs") is None


def test_a_used_golden_set_is_refused_naming_the_newest_decision_and_the_way_out() -> None:
    with pytest.raises(GoldenSetReusedError) as refused:
        _policy(EARLIER, None)
    message = str(refused.value)
    assert "golden set golden.jsonl (sha256 abababababab)" in message
    assert "route 'faq', candidate 'gpt-4o'" in message
    assert "eval-20250301T093000-bbbb1111 decided 2025-03-01 09:30:00 UTC: inconclusive" in message
    assert "(2 decisions on it so far)" in message
    assert "new golden set" in message
    assert '--rerun-reason "WHY"' in message
    assert isinstance(refused.value, ConfigError)  # the CLI's exit 3


def test_a_blank_reason_is_no_reason() -> None:
    with pytest.raises(GoldenSetReusedError):
        _policy(EARLIER[:1], "   ")


def test_a_reason_over_the_limit_is_refused() -> None:
    with pytest.raises(ConfigError, match="--rerun-reason has 1001 characters"):
        _policy(EARLIER, "x" * (MAX_REASON_CHARS + 1))


def test_a_rerun_with_a_reason_counts_the_earlier_runs() -> None:
    rerun = _policy(EARLIER, "  judge prompt fixed  ")
    assert rerun == Rerun(reason="judge prompt fixed", actor="alice", earlier=2, last=EARLIER[1])


def test_the_audit_lines_name_the_set_and_the_rerun() -> None:
    digest = "cd" * 32
    assert audit_lines(digest, 80, None) == [f"golden-set sha256:{digest} (80 items)"]
    rerun = Rerun("judge prompt fixed", "alice", 1, EARLIER[0])
    _, line = audit_lines(digest, 80, rerun)
    assert line == (
        "re-run: 1 earlier run(s) on this golden set, newest eval-20250301T080000-aaaa0000 "
        "decided 2025-03-01 08:30:00 UTC: fail, ratio 0.910; by alice; reason: judge prompt fixed"
    )


def _decision(decision_id: str, *, route: str = "faq", candidate: str = "gpt-4o",
              digest: str = "ab" * 32, at: dt.datetime = T0, stage: str = "offline",
              outcome: str = "fail") -> GateDecision:  # fmt: skip
    return GateDecision.parse({
        "decision_id": decision_id, "route": route, "gate": "accuracy", "stage": stage,
        "window_start": at, "window_end": at, "decided_at": at, "n": 80, "value": 0.9,
        "outcome": outcome, "candidate": candidate, "baseline_model": "gpt-4",
        "sql": "golden set g.jsonl (file sha256 0123456789ab), 2000 paired bootstrap "
               f"resamples\n{digest_line(digest)} (80 items)",
    })  # fmt: skip


def test_the_alert_of_a_rerun_is_manual_and_names_the_decision() -> None:
    decision = _decision("eval-20250301T100000-cccc2222", outcome="pass")
    alert = rerun_alert(decision, Rerun("judge prompt fixed", "alice", 2, EARLIER[1]))
    assert (alert.kind, alert.severity, alert.route) == ("manual", "warning", "faq")
    assert alert.decision_id == decision.decision_id
    assert alert.event_time == decision.decided_at
    assert alert.message == (
        "faq: offline gate re-run on a used golden set (2 earlier run(s), newest "
        "inconclusive) for gpt-4o: pass, by alice: judge prompt fixed"
    )


# -- the history, on ClickHouse ----------------------------------------------------------


def test_earlier_runs_are_those_of_the_route_candidate_and_golden_set(
    clickhouse: Client, ch_db: str
) -> None:
    later = T0 + dt.timedelta(hours=2)
    decisions = [
        _decision("eval-2", at=later, outcome="pass"),
        _decision("eval-1"),
        _decision("eval-1"),  # stored twice (the sink and the CLI): counted once
        _decision("eval-other-route", route="billing"),
        _decision("eval-other-candidate", candidate="claude"),
        _decision("eval-other-set", digest="ef" * 32),
        _decision("not-eval", stage="offline"),  # not published by `shadowlab eval`
    ]
    insert_events(clickhouse, ch_db, decisions)
    found = earlier_runs(clickhouse, ch_db, route="faq", candidate="gpt-4o", digest="ab" * 32)
    assert found == [
        EarlierRun("eval-1", T0, "fail", 0.9),
        EarlierRun("eval-2", later, "pass", 0.9),
    ]
    assert earlier_runs(clickhouse, ch_db, route="faq", candidate="gpt-4o", digest="00" * 32) == []
