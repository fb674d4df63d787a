"""The sink role on real parts: every topic into chDB, exact counts, redelivery, DLQ, outage."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer

from schemas import EventValidationError, RequestEvent
from shadowlab.core.errors import ClickHouseError
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    make_settings,
    produce,
    read_messages,
    run_until,
    running,
    sample_request,
    unique_topics,
    wait_until,
)
from sinks.clickhouse import TABLES, ClickHouseSink, query_events
from sinks.migrations import apply_migrations
from sinks.role import SinkRole, topic_types
from tests.samples import sample_events


def _settings(tmp_path: Path, **sink: Any) -> Settings:
    return make_settings(
        tmp_path,
        topics=unique_topics(),
        sink={"max_wait_s": 0.2, "retry_base_s": 0.1, **sink},
    )


def _count(client: Client, db: str, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {db}.{table} FINAL").result_rows[0][0])


COPIES = 7  # of each sample event, every one with its own key
MORE_REQUESTS = 93  # requests besides the copies: the requests table holds 100


def test_every_topic_lands_in_its_table_exactly_once_even_when_redelivered(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    ensure_topics(kafka, settings.topics.partitions_of())
    # no background merge may fold the duplicates away before they are counted on disk
    clickhouse.command(f"SYSTEM STOP MERGES {ch_db}.requests")
    samples = sample_events()
    names = {t.__name__: topic for topic, t in topic_types(settings.topics).items()}
    expected = {}
    for type_name, event in samples.items():
        copies = [event.model_copy(update=_unique_key(event, i)) for i in range(COPIES)]
        produce(kafka, names[type_name], copies)
        expected[TABLES[type(event)].table] = COPIES
    more = [sample_request(request_id=f"x{i}") for i in range(MORE_REQUESTS)]
    produce(kafka, names["RequestEvent"], more)
    expected["requests"] = COPIES + MORE_REQUESTS
    # a group that reads every topic once writes every event produced: the copies of each
    # sample type (one type a topic) and the other requests
    produced = COPIES * len(samples) + MORE_REQUESTS
    role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    run_until(role, lambda: sum(role.counters.written.values()) >= produced)
    counts = {table: _count(clickhouse, ch_db, table) for table in expected}
    assert counts == expected
    # redelivery: a new group reads everything again; query results do not change
    again = SinkRole(
        _settings_with_group(settings, "again"), kafka, ClickHouseSink(clickhouse, ch_db)
    )
    handled = again.counters
    run_until(
        again, lambda: sum(handled.written.values()) + sum(handled.retries.values()) >= produced
    )
    assert {table: _count(clickhouse, ch_db, table) for table in expected} == expected
    raw = clickhouse.query(f"SELECT count() FROM {ch_db}.requests").result_rows[0][0]
    # a redelivered copy is recognised by its id and bytes and never reaches the disk
    assert raw == expected["requests"]
    assert handled.retries[names["RequestEvent"]] == expected["requests"]
    assert handled.dead_lettered == {}


def _unique_key(event: Any, i: int) -> dict[str, Any]:
    for key in ("judgement_id", "feedback_id", "alert_id", "decision_id", "request_id"):
        if key in type(event).model_fields:
            return {key: f"{getattr(event, key)}-{i}"}
    return {"version": i + 1}  # RoutingFlags


def _settings_with_group(settings: Settings, group: str) -> Settings:
    return settings.model_copy(
        update={"sink": settings.sink.model_copy(update={"group_id": group})}
    )


def test_poison_messages_go_to_the_dlq_with_their_reason_and_the_rest_is_stored(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    ensure_topics(kafka, settings.topics.partitions_of())
    topic = settings.topics.requests
    producer = Producer(kafka)
    producer.produce(topic, value=b"\x00not json", key=b"p1")
    bad_tz = sample_request(request_id="p2").to_json().replace(b'Z"', b'"', 1)
    producer.produce(topic, value=bad_tz, key=b"p2")
    producer.flush(10)
    produce(kafka, topic, [sample_request(request_id=f"ok{i}") for i in range(5)])
    role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    run_until(role, lambda: role.counters.written.get(topic, 0) >= 5)
    dead = read_messages(kafka, topic + ".dlq", count=2)
    reasons = {m.key(): dict(m.headers() or [])[("error")] for m in dead}
    assert b"invalid RequestEvent" in reasons[b"p1"]
    assert b"event_time" in reasons[b"p2"]
    assert {m.value() for m in dead} == {b"\x00not json", bad_tz}
    assert dict(dead[0].headers() or [])["source.topic"] == topic.encode()
    assert _count(clickhouse, ch_db, "requests") == 5


def test_clickhouse_refusing_writes_pauses_the_sink_and_loses_nothing(
    kafka: dict[str, str], clickhouse: Client, tmp_path: Path
) -> None:
    database = f"t_{uuid.uuid4().hex[:12]}"  # not migrated yet: every insert fails
    settings = _settings(tmp_path)
    ensure_topics(kafka, settings.topics.partitions_of())
    sent = [sample_request(request_id=f"o{i}") for i in range(40)]
    produce(kafka, settings.topics.requests, sent)
    role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, database))
    with running(role):
        wait_until(lambda: role.counters.write_failures >= 3, 30, what=lambda: role.counters)
        apply_migrations(clickhouse, database)  # ClickHouse is back
        requests = settings.topics.requests
        wait_until(
            lambda: role.counters.written.get(requests, 0) >= 40, 60, what=lambda: role.counters
        )
    stored = clickhouse.query(f"SELECT request_id FROM {database}.requests FINAL").result_rows
    assert sorted(r[0] for r in stored) == sorted(e.request_id for e in sent)
    clickhouse.command(f"DROP DATABASE IF EXISTS {database}")


def test_sink_buffer_is_cleared_after_a_failed_write(
    clickhouse: Client,
) -> None:
    sink = ClickHouseSink(clickhouse, "no_such_database_here")
    sink.add("t", sink.decoder(RequestEvent).decode([sample_request().to_json()]))
    assert sink.pending() == 1
    with pytest.raises(ClickHouseError, match=r"no_such_database_here\.requests failed"):
        sink.flush()
    assert sink.pending() == 0


def test_what_only_pydantic_accepts_is_stored_as_pydantic_reads_it(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    ensure_topics(kafka, settings.topics.partitions_of())
    topic = settings.topics.requests
    base = json.loads(sample_request(request_id="f0").to_json())
    sent = {
        "f0": base,  # the fast path
        "f1": {**base, "request_id": "f1", "event_time": 1_700_000_000},  # a unix time
        "f2": {**base, "request_id": "f2", "event_time": "2026-11-20T12:00:00.1234567Z"},
        "f3": {**base, "request_id": "f3", "latency_ms": -1},  # invalid
    }
    producer = Producer(kafka)
    for key, data in sent.items():
        producer.produce(topic, value=json.dumps(data).encode(), key=key.encode())
    producer.flush(10)
    role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    run_until(role, lambda: role.counters.written.get(topic, 0) >= 3)
    stored = {e.request_id: e for e in query_events(clickhouse, ch_db, RequestEvent)}
    assert sorted(stored) == ["f0", "f1", "f2"]
    for key, event in stored.items():
        assert event == RequestEvent.from_json(json.dumps(sent[key]))
    assert stored["f2"].event_time.microsecond == 123456  # truncated, as pydantic does
    [dead] = read_messages(kafka, topic + ".dlq", count=1)
    with pytest.raises(EventValidationError) as reference:
        RequestEvent.from_json(json.dumps(sent["f3"]))
    assert dict(dead.headers() or [])["error"] == str(reference.value).encode()
