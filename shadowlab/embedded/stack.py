"""The stack every role runs on: Kafka (embedded Tansu or configured), topics, ClickHouse.

``open_stack(settings)`` is the one entry point: with no Kafka address configured it starts
the embedded broker (and stops it on exit); it creates the topics idempotently, opens the
ClickHouse client (``chdb://`` under the data dir unless a DSN is configured) and applies
the migrations.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings
from shadowlab.embedded.broker import EmbeddedBroker
from sinks.clickhouse import open_client
from sinks.migrations import apply_migrations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stack:
    """A running stack: where Kafka is, the ClickHouse client, and the settings."""

    settings: Settings
    bootstrap_servers: str
    clickhouse: Client
    broker: EmbeddedBroker | None = None

    @property
    def database(self) -> str:
        """The ClickHouse database holding shadowlab's tables."""
        return self.settings.clickhouse.database

    def kafka_config(self) -> dict[str, str]:
        """The librdkafka connection config (secrets revealed: give it only to clients)."""
        return self.settings.kafka.librdkafka(self.bootstrap_servers)


@contextmanager
def open_stack(
    settings: Settings, *, broker_port: int | None = None, migrate: bool = True
) -> Iterator[Stack]:
    """Start or connect to Kafka and ClickHouse; stop what was started on exit.

    Args:
        settings: the configuration.
        broker_port: port for the embedded broker (a free one when omitted).
        migrate: apply the ClickHouse migrations.

    Raises:
        StackError: the embedded broker could not start (binary missing, port taken…).
        ClickHouseError: ClickHouse could not be reached or migrated.
    """
    with ExitStack() as cleanup:
        broker: EmbeddedBroker | None = None
        servers = settings.kafka.bootstrap_servers
        if not servers:
            broker = EmbeddedBroker(
                port=broker_port, log_path=settings.data_dir / "logs" / "broker.log"
            )
            cleanup.enter_context(broker)
            servers = broker.bootstrap_servers
            log.info("embedded Kafka broker (Tansu) on %s, pid %s", servers, broker.pid)
        stack_kafka = settings.kafka.librdkafka(servers)
        created = ensure_topics(
            stack_kafka,
            settings.topics.partitions_of(),
            replication_factor=settings.topics.replication(),
            configs=settings.topics.configs_of(),
        )
        if created:
            log.info("created topics: %s", ", ".join(sorted(created)))
        client = open_client(settings.clickhouse.dsn_value(settings.data_dir))
        cleanup.callback(client.close)
        log.info("ClickHouse at %s", settings.clickhouse.redacted_dsn(settings.data_dir))
        if migrate:
            applied = apply_migrations(client, settings.clickhouse.database)
            if applied:
                log.info("applied migrations %s", applied)
        yield Stack(settings=settings, bootstrap_servers=servers, clickhouse=client, broker=broker)
