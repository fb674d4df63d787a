"""A sink whose writes keep failing says so (health, metric), and still stops when asked."""

from __future__ import annotations

import uuid
from pathlib import Path

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, TopicPartition

from shadowlab.admin import role_states
from shadowlab.core.kafka import consumer_config, ensure_topics
from shadowlab.roles import RoleSet
from shadowlab.testing import make_settings, produce, sample_request, unique_topics, wait_until
from sinks.clickhouse import ClickHouseSink
from sinks.role import SinkRole


def test_failing_writes_degrade_health_raise_the_stall_metric_and_stop_commits_nothing(
    kafka: dict[str, str], clickhouse: Client, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        topics=unique_topics(partitions=1),
        sink={"max_wait_s": 0.1, "retry_base_s": 0.1, "retry_max_s": 0.2},
    )
    ensure_topics(kafka, settings.topics.partitions_of())
    produce(kafka, settings.topics.requests, [sample_request() for _ in range(5)])
    missing = f"never_migrated_{uuid.uuid4().hex[:8]}"  # every write to it fails
    role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, missing))
    roles = RoleSet({"sink": role})
    with roles:
        wait_until(lambda: role.counters.stalled_seconds > 0.5, what=lambda: role.counters)
        (state,) = role_states(roles).values()
        assert state.startswith("degraded: writes failing for")
        assert missing in state
    # the RoleSet's stop() returned: the role left its retry loop when asked
    assert roles.alive() == {"sink": False}
    assert not roles.failures()
    assert role.counters.written == {}
    consumer = Consumer(consumer_config(kafka, settings.sink.group_id))
    try:
        tp = TopicPartition(settings.topics.requests, 0)
        (committed,) = consumer.committed([tp], timeout=10)
    finally:
        consumer.close()
    assert committed.offset < 0  # nothing unstored was committed: it will be read again
