"""Per-minute rollups: exact from the distinct events, whatever the sink inserted twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from clickhouse_connect.driver.client import Client

from schemas import FeedbackEvent, RequestEvent, ShadowResult
from shadowlab.testing import sample_request, sample_shadow
from sinks.clickhouse import insert_events
from sinks.migrations import MIGRATIONS, apply_migrations
from sinks.rollups import ROLLUP_VIEWS
from tests.samples import EVENT_COLUMN_MIGRATIONS

T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)


def _traffic() -> tuple[list[RequestEvent], list[ShadowResult], list[FeedbackEvent]]:
    requests, results, feedback = [], [], []
    for i in range(120):
        canary = i % 4 == 0
        status = "error" if i % 10 == 3 else "ok"
        request = sample_request(
            request_id=f"r{i}",
            event_time=T0 + dt.timedelta(seconds=i),  # two minutes
            model="gpt-4o" if canary else "gpt-4",
            arm="canary" if canary else "primary",
            latency_ms=100.0 + 7 * i,
            status=status,
            error_type="InternalServerError" if status == "error" else None,
            answer=None if status == "error" else "ok",
            cost_usd=0.001 * (i % 5),
        )
        requests.append(request)
        if not canary:
            results.append(
                sample_shadow(request_id=request.request_id, event_time=request.event_time)
            )
        if i % 3 == 0:
            feedback.append(
                FeedbackEvent.parse(
                    {
                        "feedback_id": f"f{i}",
                        "request_id": request.request_id,
                        "event_time": request.event_time,
                        "route": request.route,
                        "model": request.model,
                        "arm": request.arm,
                        "csat": 1 + i % 5,
                    }
                )
            )
    return requests, results, feedback


def _refresh(client: Client, db: str) -> None:
    for view in ROLLUP_VIEWS:
        client.command(f"SYSTEM REFRESH VIEW {db}.{view}")
        client.command(f"SYSTEM WAIT VIEW {db}.{view}")


def _expected_calls(requests: list[RequestEvent], results: list[ShadowResult]) -> set[tuple]:
    groups: dict[tuple, list[float]] = {}
    for r in requests:
        key = (r.model, r.arm, r.event_time.replace(second=0, microsecond=0))
        groups.setdefault(key, [0, 0, 0.0])
        groups[key][0] += 1
        groups[key][1] += r.status == "error"
        groups[key][2] += r.cost_usd
    for s in results:
        key = (s.candidate, "shadow", s.event_time.replace(second=0, microsecond=0))
        groups.setdefault(key, [0, 0, 0.0])
        groups[key][0] += 1
        groups[key][2] += s.cost_usd
    return {(*k, int(v[0]), int(v[1]), round(v[2], 9)) for k, v in groups.items()}


def _calls(client: Client, db: str) -> set[tuple]:
    rows = client.query(
        f"SELECT model, arm, minute, calls, errors, round(cost_sum_usd, 9) FROM {db}.calls_1m FINAL"
    ).result_rows
    return {(m, a, t.replace(tzinfo=dt.UTC), c, e, cost) for m, a, t, c, e, cost in rows}


def test_rollups_count_each_event_once_despite_duplicate_inserts(
    clickhouse: Client, ch_db: str
) -> None:
    requests, results, feedback = _traffic()
    for events in (requests, results, feedback):
        insert_events(clickhouse, ch_db, events)
        insert_events(clickhouse, ch_db, events[::3])  # a redelivered third, in another block
    _refresh(clickhouse, ch_db)

    assert _calls(clickhouse, ch_db) == _expected_calls(requests, results)
    p95, exact = clickhouse.query(
        f"SELECT (SELECT quantilesTimingMerge(0.5, 0.95, 0.99)(latency_quantiles)[2] "
        f"FROM {ch_db}.calls_1m FINAL WHERE arm != 'shadow'), "
        f"(SELECT quantileTiming(0.95)(latency_ms) FROM {ch_db}.requests FINAL)"
    ).result_rows[0]
    assert p95 == exact
    csat = clickhouse.query(
        f"SELECT sum(feedback), sum(csat_sum) / sum(csat_n) FROM {ch_db}.feedback_1m FINAL"
    ).result_rows[0]
    assert csat[0] == len(feedback)
    assert csat[1] == pytest.approx(sum(f.csat or 0 for f in feedback) / len(feedback))


def test_the_rollup_migration_backfills_existing_events(
    clickhouse: Client, ch_db_at: Callable[[int], str]
) -> None:
    db_before_rollups = ch_db_at(2)
    # today's events carry columns later migrations added (tool calls, usage): add just those
    apply_migrations(clickhouse, db_before_rollups, EVENT_COLUMN_MIGRATIONS)
    requests, results, _ = _traffic()
    insert_events(clickhouse, db_before_rollups, requests)
    insert_events(clickhouse, db_before_rollups, results)
    assert apply_migrations(clickhouse, db_before_rollups) == [
        m.version for m in MIGRATIONS if m.version >= 3 and m not in EVENT_COLUMN_MIGRATIONS
    ]
    assert _calls(clickhouse, db_before_rollups) == _expected_calls(requests, results)
