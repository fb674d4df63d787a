"""ClickHouse schema: versioned migrations, lossless rows, duplicate inserts change nothing."""

from __future__ import annotations

import datetime as dt

import pytest
from clickhouse_connect.driver.client import Client

from schemas import EVENT_TYPES, RequestEvent
from shadowlab.core.errors import MigrationError
from shadowlab.testing import sample_request
from sinks.clickhouse import TABLES, insert_events, query_events
from sinks.migrations import MIGRATIONS, Migration, applied_versions, apply_migrations
from tests.samples import sample_events


def test_migrating_twice_is_a_no_op(clickhouse: Client, ch_db: str) -> None:
    tables_before = clickhouse.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
        parameters={"db": ch_db},
    ).result_rows
    assert apply_migrations(clickhouse, ch_db) == []
    assert applied_versions(clickhouse, ch_db) == {m.version for m in MIGRATIONS}
    ledger = clickhouse.query(f"SELECT count() FROM {ch_db}.schema_migrations").result_rows
    assert ledger == [(len(MIGRATIONS),)]
    tables_after = clickhouse.query(
        "SELECT name, create_table_query FROM system.tables WHERE database = {db:String}",
        parameters={"db": ch_db},
    ).result_rows
    assert sorted(tables_after) == sorted(tables_before)


def test_first_migration_creates_a_table_per_event_type(clickhouse: Client, ch_db: str) -> None:
    for spec in TABLES.values():
        columns = [
            row[0]
            for row in clickhouse.query(
                "SELECT name FROM system.columns WHERE database = {db:String} "
                "AND table = {t:String} ORDER BY position",
                parameters={"db": ch_db, "t": spec.table},
            ).result_rows
        ]
        assert sorted(columns) == sorted([*spec.columns, "inserted_at"]), spec.table
    assert {spec.event_type.__name__ for spec in TABLES.values()} == set(EVENT_TYPES)


def test_tables_are_partitioned_by_day_and_replacing(clickhouse: Client, ch_db: str) -> None:
    rows = clickhouse.query(
        "SELECT name, engine, partition_key, sorting_key FROM system.tables "
        "WHERE database = {db:String} AND name = 'requests'",
        parameters={"db": ch_db},
    ).result_rows
    assert rows == [
        ("requests", "ReplacingMergeTree", "toDate(event_time)", "route, event_time, request_id")
    ]


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_type_reads_back_equal(clickhouse: Client, ch_db: str, name: str) -> None:
    event = sample_events()[name]
    insert_events(clickhouse, ch_db, [event])
    assert query_events(clickhouse, ch_db, type(event)) == [event]


def test_duplicate_inserts_do_not_change_query_results(clickhouse: Client, ch_db: str) -> None:
    start = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
    events = [
        sample_request(
            request_id=f"r{i}", event_time=start + dt.timedelta(minutes=i), latency_ms=100.0 + i
        )
        for i in range(50)
    ]
    gate_sql = (
        f"SELECT count(), sum(latency_ms), quantileExact(0.95)(latency_ms) "
        f"FROM {ch_db}.requests FINAL WHERE route = {{route:String}}"
    )
    params = {"route": "support-answer"}
    insert_events(clickhouse, ch_db, events)
    before = clickhouse.query(gate_sql, parameters=params).result_rows
    # redelivery: the same events again, batched differently
    insert_events(clickhouse, ch_db, events[10:30])
    insert_events(clickhouse, ch_db, events[::-1])
    raw = clickhouse.query(f"SELECT count() FROM {ch_db}.requests").result_rows
    assert raw[0][0] == 120  # the duplicates are on disk until a merge ...
    assert clickhouse.query(gate_sql, parameters=params).result_rows == before  # ... never seen
    assert before[0][0] == 50
    assert query_events(clickhouse, ch_db, RequestEvent, order_by="event_time") == events
    clickhouse.command(f"OPTIMIZE TABLE {ch_db}.requests FINAL")
    merged = clickhouse.query(f"SELECT count() FROM {ch_db}.requests").result_rows
    assert merged[0][0] == 50


def test_failed_migration_names_itself_and_is_not_recorded(clickhouse: Client, ch_db: str) -> None:
    broken = Migration(999, "broken on purpose", ("CREATE TABLE {db}.x (a NoSuchType) ENGINE=Log",))
    with pytest.raises(MigrationError, match=r"migration 999 \(broken on purpose\) failed"):
        apply_migrations(clickhouse, ch_db, (*MIGRATIONS, broken))
    assert 999 not in applied_versions(clickhouse, ch_db)


def test_latest_views_hide_duplicates(clickhouse: Client, ch_db: str) -> None:
    events = [sample_request(request_id=f"v{i}") for i in range(10)]
    insert_events(clickhouse, ch_db, events)
    insert_events(clickhouse, ch_db, events[:4])
    raw = clickhouse.query(f"SELECT count() FROM {ch_db}.requests").result_rows[0][0]
    latest = clickhouse.query(f"SELECT count() FROM {ch_db}.requests_latest").result_rows[0][0]
    assert (raw, latest) == (14, 10)
    for spec in TABLES.values():  # every event table has its view
        clickhouse.query(f"SELECT count() FROM {ch_db}.{spec.table}_latest")
