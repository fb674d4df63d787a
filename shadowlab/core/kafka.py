"""Thin Kafka helpers shared by every role: admin client, topic creation, client configs.

The consumer and producer defaults follow ``notes/embedded-broker-compatibility.md``: they
are right for Apache Kafka and keep the embedded broker (Tansu) fast (short session timeout,
short fetch wait, ``range`` assignment, no KIP-848, no metrics push).
"""

from __future__ import annotations

from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shadowlab.core.errors import StackError

#: Consumer settings that hold on both brokers (see the module docstring).
CONSUMER_DEFAULTS: dict[str, str] = {
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "500",
    "fetch.wait.max.ms": "50",
    "partition.assignment.strategy": "range",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": "false",
    "enable.metrics.push": "false",
}

#: Producer settings: idempotent, durable, lz4-compressed, short linger. Keys are placed with
#: the Java client's murmur2 hash, so a request and its shadow results (keyed by request_id)
#: share a partition number with what faust (aiokafka) and Java/Go services produce: the
#: join relies on that co-partitioning.
PRODUCER_DEFAULTS: dict[str, str] = {
    "partitioner": "murmur2_random",
    "enable.idempotence": "true",
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": "5",
    "message.timeout.ms": "30000",
    "enable.metrics.push": "false",
}


def consumer_config(
    connection: Mapping[str, str], group_id: str, **overrides: str
) -> dict[str, str]:
    """Return a confluent-kafka consumer config: connection + defaults + overrides."""
    return {**connection, **CONSUMER_DEFAULTS, "group.id": group_id, **overrides}


def producer_config(connection: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """Return a confluent-kafka producer config: connection + defaults + overrides."""
    return {**connection, **PRODUCER_DEFAULTS, **overrides}


def ensure_topics(
    connection: Mapping[str, str],
    partitions: Mapping[str, int],
    replication_factor: int = 1,
    timeout_s: float = 15.0,
) -> list[str]:
    """Create the topics that do not exist yet; existing ones are left as they are.

    Returns:
        The names of the topics this call created.

    Raises:
        StackError: naming the topic and the broker's error when creation failed.
    """
    admin = AdminClient(dict(connection))
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [
        NewTopic(name, num_partitions=count, replication_factor=replication_factor)
        for name, count in partitions.items()
        if name not in existing
    ]
    if not wanted:
        return []
    futures = admin.create_topics(wanted, request_timeout=timeout_s)
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StackError(f"could not create topic {name!r}: {error}") from None
    return created
