"""A shadow result after the join window costs latency, not data: ``joined`` wins."""

from __future__ import annotations

from pathlib import Path

from clickhouse_connect.driver.client import Client

from processors.join import JoinRole
from schemas import Comparison
from shadowlab.core.kafka import ensure_topics
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing import (
    make_settings,
    models_at,
    produce,
    read_events,
    route_config,
    run_until,
    running,
    sample_request,
    sample_shadow,
    unique_topics,
    wait_until,
)
from sinks.clickhouse import ClickHouseSink
from sinks.role import SinkRole


def test_a_late_result_turns_the_missing_comparison_into_a_joined_one(
    broker: EmbeddedBroker, kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path, kafka=kafka, topics=unique_topics(partitions=1),
        models=models_at("http://sim", "gpt-4", "gpt-4o"), routes=[route_config("gpt-4", "gpt-4o")],
        join={"window_s": 1.0, "tick_s": 0.2}, sink={"max_wait_s": 0.1},
    )  # fmt: skip
    ensure_topics(kafka, settings.topics.partitions_of())
    request = sample_request(request_id="late-1")
    produce(kafka, settings.topics.requests, [request], "request_id")
    join = JoinRole(settings, broker.bootstrap_servers, embedded=isinstance(broker, EmbeddedBroker))
    with running(join):
        wait_until(lambda: join.counters.comparisons["missing"] == 1, what=lambda: join.counters)
        result = sample_shadow(request_id="late-1", event_time=request.event_time)
        produce(kafka, settings.topics.shadow, [result], "request_id")  # after the window
        wait_until(lambda: join.counters.comparisons["joined"] == 1, what=lambda: join.counters)
    emitted = read_events(kafka, settings.topics.comparisons, Comparison, count=2)
    assert [c.status for c in emitted] == ["missing", "joined"]
    sink = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    comparisons = settings.topics.comparisons
    run_until(sink, lambda: sink.counters.written.get(comparisons, 0) == 2)
    stored = clickhouse.query(
        f"SELECT status, candidate_status FROM {ch_db}.comparisons FINAL"
    ).result_rows
    assert stored == [("joined", "ok")]
    assert sink.counters.dead_lettered == {}
