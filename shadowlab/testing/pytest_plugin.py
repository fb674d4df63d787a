"""pytest fixtures on real parts: a Tansu broker and a chDB engine, one each per session.

Enable with ``pytest_plugins = ["shadowlab.testing.pytest_plugin"]`` in a ``conftest.py`` (or
``-p shadowlab.testing.pytest_plugin``). The broker is stopped when the session ends, whether
tests passed or failed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka.admin import AdminClient

from shadowlab.core.kafka import ensure_topics
from shadowlab.embedded.broker import EmbeddedBroker
from sinks.clickhouse import open_client
from sinks.migrations import MIGRATIONS, apply_migrations


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A Tansu broker on a free loopback port for the whole session."""
    with EmbeddedBroker() as running:
        yield running


@pytest.fixture(scope="session")
def kafka(broker: EmbeddedBroker) -> dict[str, str]:
    """The librdkafka connection config of the session broker."""
    return {"bootstrap.servers": broker.bootstrap_servers}


@pytest.fixture
def topic_factory(kafka: dict[str, str]) -> Iterator[Callable[..., str]]:
    """Create uniquely named topics; they are deleted (memory freed) after the test."""
    created: list[str] = []

    def make(prefix: str = "t", partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:10]}"
        ensure_topics(kafka, {name: partitions})
        created.append(name)
        return name

    yield make
    if created:
        admin = AdminClient(dict(kafka))  # keep a reference: the futures need the live handle
        futures = admin.delete_topics(created, operation_timeout=10)
        for future in futures.values():
            future.result(timeout=10)


@pytest.fixture(scope="session")
def clickhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    """The session's chDB engine (chDB allows one engine path per process)."""
    client = open_client(f"chdb://{tmp_path_factory.mktemp('chdb')}")
    yield client
    client.close()


@pytest.fixture
def ch_db(clickhouse: Client) -> Iterator[str]:
    """A fresh, migrated database for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    apply_migrations(clickhouse, name)
    yield name
    clickhouse.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def ch_db_at(clickhouse: Client) -> Iterator[Callable[[int], str]]:
    """Make fresh databases migrated up to a version (to test a later migration on them)."""
    made: list[str] = []

    def make(version: int) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        apply_migrations(clickhouse, name, tuple(m for m in MIGRATIONS if m.version <= version))
        made.append(name)
        return name

    yield make
    for name in made:
        clickhouse.command(f"DROP DATABASE IF EXISTS {name}")


__all__ = ["broker", "ch_db", "ch_db_at", "clickhouse", "kafka", "topic_factory"]
