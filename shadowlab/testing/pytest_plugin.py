"""pytest fixtures on real parts: a Kafka broker and a chDB engine, one each per session.

Enable with ``pytest_plugins = ["shadowlab.testing.pytest_plugin"]`` in a ``conftest.py`` (or
``-p shadowlab.testing.pytest_plugin``). The broker is stopped when the session ends, whether
tests passed or failed.

``--broker tansu`` (the default) runs the embedded broker; ``--broker apache`` runs Apache
Kafka (KRaft, one node) from its Maven Central jars (:mod:`shadowlab.testing.apache_kafka`:
needs Java 17+ and Maven, else the session stops at once with one line saying what to
install). Every test that uses a broker fixture is marked ``kafka``, so
``pytest -m kafka --broker apache`` reruns exactly those. ``kafka_cluster`` is a three-node
Apache Kafka cluster (``apache_only`` tests: skipped on the embedded broker).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Literal

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka.admin import AdminClient

from shadowlab.core.errors import BrokerBinaryNotFoundError
from shadowlab.core.kafka import ensure_topics
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing.apache_kafka import ApacheKafka, describe, kafka_jars
from sinks.clickhouse import open_client
from sinks.migrations import MIGRATIONS, apply_migrations

BrokerKind = Literal["tansu", "apache"]
#: The fixtures that mean "this test talks to Kafka".
_KAFKA_FIXTURES = frozenset({"broker", "kafka", "topic_factory", "kafka_cluster"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--broker tansu|apache``."""
    parser.addoption(
        "--broker", choices=("tansu", "apache"), default="tansu",
        help="the Kafka the integration tests run on: the embedded Tansu broker (default) or "
             "Apache Kafka from its Maven Central jars (needs Java 17+ and Maven)",
    )  # fmt: skip


def _kind(config: pytest.Config) -> BrokerKind:
    kind: BrokerKind = config.getoption("--broker")
    return kind


def pytest_configure(config: pytest.Config) -> None:
    """With ``--broker apache``, resolve Kafka's jars first; stop at once if it cannot run."""
    if _kind(config) == "apache":
        try:
            kafka_jars()
        except BrokerBinaryNotFoundError as exc:
            raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    """Which Kafka the tests run on."""
    if _kind(config) == "apache":
        return f"broker: {describe(1)} (--broker apache)"
    return "broker: embedded Tansu (memory storage; --broker apache for Apache Kafka)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that use a broker ``kafka``; skip ``apache_only`` ones on Tansu."""
    skip = pytest.mark.skip(reason="needs Apache Kafka: run with --broker apache")
    for item in items:
        if _KAFKA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)
        if _kind(config) == "tansu" and item.get_closest_marker("apache_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def broker_kind(request: pytest.FixtureRequest) -> BrokerKind:
    """``tansu`` or ``apache``: the session's broker."""
    return _kind(request.config)


@pytest.fixture(scope="session")
def embedded_broker(broker_kind: BrokerKind) -> bool:
    """Whether the session's broker is the embedded one (roles take it as ``embedded``)."""
    return broker_kind == "tansu"


@pytest.fixture(scope="session")
def broker(broker_kind: BrokerKind) -> Iterator[EmbeddedBroker | ApacheKafka]:
    """The session's broker on free loopback ports: Tansu, or a one-node Apache Kafka."""
    running: EmbeddedBroker | ApacheKafka
    running = ApacheKafka() if broker_kind == "apache" else EmbeddedBroker()
    with running:
        yield running


@pytest.fixture(scope="session")
def kafka(broker: EmbeddedBroker | ApacheKafka) -> dict[str, str]:
    """The librdkafka connection config of the session broker."""
    return {"bootstrap.servers": broker.bootstrap_servers}


@pytest.fixture(scope="module")
def kafka_cluster(broker_kind: BrokerKind) -> Iterator[ApacheKafka]:
    """A three-node Apache Kafka cluster (replication 3, min ISR 2) for one module."""
    if broker_kind != "apache":
        pytest.skip("a Kafka cluster needs --broker apache")
    with ApacheKafka(nodes=3) as cluster:
        yield cluster


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


__all__ = [
    "broker",
    "broker_kind",
    "ch_db",
    "ch_db_at",
    "clickhouse",
    "embedded_broker",
    "kafka",
    "kafka_cluster",
    "topic_factory",
]
