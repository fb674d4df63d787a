"""No insert spans more partitions than ClickHouse allows in one block."""

from __future__ import annotations

import datetime as dt

from clickhouse_connect.driver.client import Client

from schemas import RequestEvent
from shadowlab.testing import sample_request
from sinks.clickhouse import (
    MAX_DAYS_PER_INSERT,
    TABLES,
    ClickHouseSink,
    day_groups,
    spec_of,
)

START = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


def _days(n: int, per_day: int = 1) -> list[dt.datetime]:
    return [START + dt.timedelta(days=d, minutes=m) for m in range(per_day) for d in range(n)]


def test_a_batch_within_the_limit_is_one_group() -> None:
    assert day_groups(_days(MAX_DAYS_PER_INSERT, per_day=3)) is None


def test_a_batch_over_the_limit_is_split_into_whole_days() -> None:
    instants = _days(150, per_day=2)
    groups = day_groups(instants)
    assert groups is not None
    assert sorted(i for g in groups for i in g) == list(range(len(instants)))
    spans = [{instants[i].date() for i in g} for g in groups]
    assert [len(s) for s in spans] == [50, 50, 50]
    assert not set.intersection(*spans)  # a day is never split across blocks


def test_every_table_names_a_partition_column_it_has() -> None:
    for spec in TABLES.values():
        assert spec.partitioned_by in spec.columns


def test_events_on_150_days_in_one_batch_are_all_stored(clickhouse: Client, ch_db: str) -> None:
    events = [
        sample_request(request_id=f"day-{i}", event_time=START - dt.timedelta(days=i))
        for i in range(150)
    ]
    sink = ClickHouseSink(clickhouse, ch_db)
    sink.add("llm.requests", sink.decoder(RequestEvent).decode([e.to_json() for e in events]))
    assert sink.flush() == 150
    table = spec_of(RequestEvent).table
    rows = clickhouse.query(f"SELECT count(), uniq(toDate(event_time)) FROM {ch_db}.{table}")
    assert rows.result_rows[0] == (150, 150)
