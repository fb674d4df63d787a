"""On a three-node Apache Kafka cluster: a partition leader killed mid-stream loses nothing.

An EventProducer emits at 2,000 events/s while the sink role stores them; the broker leading
the requests' partition 0 is killed with SIGKILL mid-stream and restarted later. Nothing is
lost, nothing is stored twice, the caller kept emitting while the leader was dead (the test
waits for the emitter's progress between the kill and the restart: a blocked caller would
never get there), and the role is still running. Run with ``--broker apache``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka.admin import AdminClient, ConfigResource

from producers import EventProducer
from schemas import RequestEvent
from shadowlab.core.kafka import ensure_topics
from shadowlab.testing import (
    end_offsets,
    is_running,
    make_settings,
    read_messages,
    running,
    sample_request,
    wait_until,
)
from shadowlab.testing.apache_kafka import ApacheKafka
from sinks.clickhouse import ClickHouseSink
from sinks.role import SinkRole

pytestmark = [pytest.mark.apache_only, pytest.mark.timeout(900)]
EVENTS = 12_000
RATE = 2_000


class Emitter:
    """Emits events at about ``RATE`` per second in a thread; ``sent`` is its progress."""

    def __init__(self, producer: EventProducer, events: list[RequestEvent]) -> None:
        self.producer, self.events = producer, events
        self.sent = 0
        self.slowest_s = 0.0
        self.thread = threading.Thread(target=self._run, name="emitter")

    def _run(self) -> None:
        started = time.perf_counter()
        for i, event in enumerate(self.events):
            call = time.perf_counter()
            self.producer.emit_request(event)
            self.slowest_s = max(self.slowest_s, time.perf_counter() - call)
            self.sent = i + 1
            ahead = self.sent / RATE - (time.perf_counter() - started)
            if ahead > 0:
                time.sleep(ahead)


def test_a_leader_killed_mid_stream_loses_nothing_and_stores_nothing_twice(
    kafka_cluster: ApacheKafka, clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    connection = {"bootstrap.servers": kafka_cluster.bootstrap_servers}
    settings = make_settings(tmp_path, clickhouse={"database": ch_db}, sink={"max_wait_s": 0.2})
    topic = settings.topics.requests
    ensure_topics(connection, settings.topics.partitions_of(), configs=settings.topics.configs_of())
    events = [sample_request(request_id=f"failover-{i:05d}") for i in range(EVENTS)]
    sink = SinkRole(settings, connection, ClickHouseSink(clickhouse, ch_db))

    def stored() -> tuple[int, int]:
        ((rows, ids),) = clickhouse.query(
            f"SELECT count(), uniqExact(request_id) FROM {ch_db}.requests"
        ).result_rows
        return int(rows), int(ids)

    with EventProducer(connection, tmp_path / "journal") as producer, running(sink):
        emitter = Emitter(producer, events)
        emitter.thread.start()
        wait_until(lambda: emitter.sent >= EVENTS // 4, 120, what="the emitter to start")
        victim = kafka_cluster.leader(topic, 0)
        kafka_cluster.kill(victim)
        killed_at = emitter.sent
        # the caller goes on while the leader is dead: half the events are emitted before
        # the broker comes back (a blocked caller would never get here)
        wait_until(lambda: emitter.sent >= killed_at + EVENTS // 2, 300,
                   what=lambda: f"{emitter.sent} emitted, leader {victim} dead")  # fmt: skip
        kafka_cluster.restart(victim)
        emitter.thread.join(120)
        assert producer.flush(120)
        wait_until(lambda: stored()[1] >= EVENTS, 300, what=lambda: f"stored {stored()}")
        assert is_running(sink)
    assert stored() == (EVENTS, EVENTS)  # every event once: none lost, none stored twice
    offsets = end_offsets(connection, [(topic, p) for p in range(settings.topics.partitions)])
    assert sum(offsets.values()) == EVENTS  # the idempotent producer wrote none twice
    keys = {m.key() for m in read_messages(connection, topic, EVENTS, timeout_s=120)}
    assert len(keys) == EVENTS
    print(f"slowest emit call across the failover: {emitter.slowest_s * 1e3:.1f} ms")


def test_routing_flags_is_compacted_and_other_topics_replicated(
    kafka_cluster: ApacheKafka, tmp_path: Path
) -> None:
    connection = {"bootstrap.servers": kafka_cluster.bootstrap_servers}
    settings = make_settings(tmp_path)
    topics = settings.topics.model_copy(update={"flags": "flags-compacted", "requests": "req-rf"})
    ensure_topics(connection, topics.partitions_of(), configs=topics.configs_of())
    admin = AdminClient(connection)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "flags-compacted")
    config = admin.describe_configs([resource])[resource].result(30)
    assert config["cleanup.policy"].value == "compact"
    metadata = admin.list_topics("req-rf", timeout=30).topics["req-rf"]
    assert all(len(p.replicas) == 3 for p in metadata.partitions.values())
