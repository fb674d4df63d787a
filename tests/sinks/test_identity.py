"""An id is stored once, whatever its event time: retries dropped, conflicts dead-lettered."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client

from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    make_settings,
    produce,
    read_messages,
    run_until,
    sample_request,
    unique_topics,
)
from sinks.clickhouse import ClickHouseSink, insert_events
from sinks.identity import IdentityLedger, fate
from sinks.migrations import MIGRATIONS, apply_migrations
from sinks.role import SinkRole
from tests.samples import EVENT_COLUMN_MIGRATIONS

T = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)


def _settings(tmp_path: Path, kafka: dict[str, str]) -> Settings:
    settings = make_settings(
        tmp_path, kafka=kafka, topics=unique_topics(partitions=1), sink={"max_wait_s": 0.1},
    )  # fmt: skip
    ensure_topics(kafka, settings.topics.partitions_of())
    return settings


def _sink(settings: Settings, kafka: dict[str, str], client: Client, db: str) -> SinkRole:
    return SinkRole(settings, kafka, ClickHouseSink(client, db))


def _handled(role: SinkRole) -> int:
    c = role.counters
    return sum(c.written.values()) + sum(c.retries.values()) + sum(c.dead_lettered.values())


def _stored(client: Client, db: str) -> dict[str, tuple[dt.datetime, str | None]]:
    rows = client.query(f"SELECT request_id, event_time, answer FROM {db}.requests").result_rows
    assert len(rows) == len({r[0] for r in rows})  # not even a hidden copy on disk
    return {r[0]: (r[1], r[2]) for r in rows}


def test_copies_are_dropped_and_conflicts_dead_lettered_whatever_the_event_time(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, kafka)
    first = sample_request(request_id="id-1", event_time=T, answer="Two years.")
    other_time = first.model_copy(update={"event_time": T - dt.timedelta(days=3)})
    other_answer = first.model_copy(update={"answer": "Forever."})
    in_batch = [sample_request(request_id="id-2", event_time=T, answer="a"),
                sample_request(request_id="id-2", event_time=T, answer="b")]  # fmt: skip
    events = [first, first, other_time, other_answer, *in_batch]
    produce(kafka, settings.topics.requests, events)
    role = _sink(settings, kafka, clickhouse, ch_db)
    run_until(role, lambda: _handled(role) == len(events))
    assert _stored(clickhouse, ch_db) == {"id-1": (T, "Two years."), "id-2": (T, "a")}
    assert role.counters.retries == {settings.topics.requests: 1}
    letters = read_messages(kafka, settings.topics.requests + settings.topics.dlq_suffix, 3)
    for letter in letters:
        headers = dict(letter.headers() or [])
        assert headers["error.class"] == b"ConflictingDuplicateError"
        assert headers["error"].startswith(b"conflicting_duplicate: requests already holds")
    # a new sink (a restart: nothing in memory) knows them from event_ids
    produce(kafka, settings.topics.requests, [other_answer, first])
    again = _sink(settings, kafka, clickhouse, ch_db)
    run_until(again, lambda: _handled(again) == 2)  # the same group: the two new messages
    assert (again.counters.retries, again.counters.dead_lettered) == (
        {settings.topics.requests: 1},
        {settings.topics.requests: 1},
    )
    assert _stored(clickhouse, ch_db) == {"id-1": (T, "Two years."), "id-2": (T, "a")}


def test_events_stored_before_the_migration_are_known_after_it(
    clickhouse: Client, ch_db_at: Callable[[int], str]
) -> None:
    db_before_identities = ch_db_at(5)
    db = db_before_identities
    # today's events carry columns later migrations added (tool calls, usage): add just those
    apply_migrations(clickhouse, db, EVENT_COLUMN_MIGRATIONS)
    old = sample_request(request_id="old-1", event_time=T)
    insert_events(clickhouse, db, [old])
    assert apply_migrations(clickhouse, db) == [
        m.version for m in MIGRATIONS if m.version >= 6 and m not in EVENT_COLUMN_MIGRATIONS
    ]
    ledger = IdentityLedger(clickhouse, db)
    # stored before (no digest known): any copy is taken as a retry, nothing is lost
    assert ledger.verdicts("requests", ["old-1", "new-1"], ["x", "y"]) == ["retry", "new"]
    assert ledger.verdicts("requests", ["new-1", "new-1"], ["y", "z"]) == ["new", "conflict"]


def test_a_verdict_remembers_nothing_until_told(clickhouse: Client, ch_db: str) -> None:
    ledger = IdentityLedger(clickhouse, ch_db)
    assert ledger.verdicts("requests", ["a"], ["d1"]) == ["new"]
    assert ledger.verdicts("requests", ["a"], ["d2"]) == ["new"]  # a failed batch's retry
    ledger.remember("requests", ["a"], ["d1"])
    assert ledger.verdicts("requests", ["a", "a"], ["d1", "d2"]) == ["retry", "conflict"]


def test_a_joined_comparison_supersedes_a_missing_one_and_never_the_reverse() -> None:
    assert fate("missing:a", "joined:b", ranked=True) == "new"  # the late result's pair
    assert fate("joined:b", "missing:a", ranked=True) == "retry"  # a stale missing, dropped
    assert fate("joined:b", "joined:b", ranked=True) == "retry"
    assert fate("joined:b", "joined:c", ranked=True) == "conflict"
    assert fate("missing:", "missing:a", ranked=True) == "retry"  # backfilled by migration 6
    assert fate("", "anything") == "retry"
