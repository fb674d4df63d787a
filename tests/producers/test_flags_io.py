"""Flags on a real broker: changes reach a running Router fast, versions only go forward,
conflicts are caught, and a restart with Kafka down serves the cached flags."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from producers import FlagsClient, LiveRouter, load_cache, rollback, set_flags
from schemas import RoutingFlags
from shadowlab.core.errors import FlagsConflictError
from shadowlab.embedded.broker import free_port

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def _first(route: str = "faq", weight: int = 500) -> RoutingFlags:
    return set_flags(
        None,
        route=route,
        primary="gpt-4",
        canary="gpt-4o",
        canary_weight_bp=weight,
        actor="t",
        reason="",
        now=NOW,
    )


def _wait(predicate: Callable[[], bool], timeout_s: float = 5.0) -> float:
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError
        time.sleep(0.001)
    return time.perf_counter() - started


def test_a_change_reaches_a_running_router_in_under_a_second(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("routing.flags")
    with (
        FlagsClient(kafka, topic) as client,
        LiveRouter(kafka, topic, cache_path=tmp_path / "flags.json") as router,
    ):
        client.publish(_first())
        _wait(lambda: router.version("faq") == 1)
        delays = []
        for _ in range(5):
            change = rollback(
                client.current("faq"), route="faq", actor="t", reason="drill", now=NOW
            )
            started = time.perf_counter()
            client.publish(change)
            publish_s = time.perf_counter() - started
            delays.append(publish_s + _wait(lambda c=change: router.version("faq") == c.version))
            assert router.choose("faq", "u").arm == "override"
            client.publish(
                set_flags(
                    client.current("faq"),
                    route="faq",
                    primary="gpt-4",
                    canary="gpt-4o",
                    canary_weight_bp=500,
                    actor="t",
                    reason="",
                    now=NOW,
                )
            )
        print(f"flags change → running Router: max {max(delays) * 1000:.0f} ms")
        assert max(delays) < 1.0
    assert [f.version for f in load_cache(tmp_path / "flags.json")] == [11]


def test_older_versions_never_overwrite_newer_ones(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("routing.flags")
    v1 = _first()
    v2 = set_flags(
        v1,
        route="faq",
        primary="gpt-4",
        canary="gpt-4o",
        canary_weight_bp=2500,
        actor="t",
        reason="",
        now=NOW,
    )
    producer = Producer(kafka)
    for f in (v2, v1):  # a late, older write after the newer one
        producer.produce(topic, key="faq", value=f.to_json())
    producer.produce(topic, key="faq", value=b"{not json")
    producer.flush(10)
    with LiveRouter(kafka, topic) as router:
        assert router.reader.wait_caught_up(10)
        assert router.flags("faq") == v2
        assert router.reader.stale == 1
        assert router.reader.malformed == 1


def test_concurrent_writers_conflict_instead_of_losing_a_change(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("routing.flags")
    with FlagsClient(kafka, topic) as a, FlagsClient(kafka, topic) as b:
        a.publish(_first())
        _wait(lambda: b.table.version("faq") == 1)
        change_a = rollback(a.current("faq"), route="faq", actor="alice", reason="a", now=NOW)
        change_b = set_flags(
            b.current("faq"),
            route="faq",
            primary="gpt-4",
            canary="gpt-4o",
            canary_weight_bp=5000,
            actor="bob",
            reason="b",
            now=NOW,
        )
        a.publish(change_a)
        with pytest.raises(FlagsConflictError, match="another writer changed 'faq'"):
            b.publish(change_b)
        assert b.current("faq") == change_a


def test_restart_with_kafka_down_serves_the_cached_flags(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("routing.flags")
    cache = tmp_path / "flags.json"
    with FlagsClient(kafka, topic) as client, LiveRouter(kafka, topic, cache_path=cache) as live:
        client.publish(_first(weight=10_000))
        _wait(lambda: live.version("faq") == 1)
        _wait(cache.exists)
    dead = {"bootstrap.servers": f"127.0.0.1:{free_port()}"}
    with LiveRouter(dead, topic, cache_path=cache) as restarted:
        assignment = restarted.choose("faq", "user-1")
    assert (assignment.model, assignment.arm, assignment.flags_version) == ("gpt-4o", "canary", 1)
