"""Hostile input on the shadow role's own topics never stops it at start."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from processors.budget import RecentPairs
from processors.shadow import ShadowRole, scan_paid
from shadowlab.core.kafka import consumer_config, ensure_topics, producer_config
from shadowlab.testing import (
    make_settings,
    models_at,
    produce,
    route_config,
    running,
    sample_request,
    sample_shadow,
    simulated_models,
    unique_topics,
    wait_until,
)


def test_the_paid_scan_reads_past_deep_nesting_garbage_and_tombstones(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("shadow-hostile")
    good = [sample_shadow(), sample_shadow()]
    producer = Producer(producer_config(kafka, **{"linger.ms": "0"}))
    payloads: list[bytes | None] = [
        b"[" * 200_000 + b"]" * 200_000,  # RecursionError in json.loads
        good[0].to_json(),
        b"\xff\xfe not json",
        None,  # a tombstone
        b'{"request_id": "x"}',
        good[1].to_json(),
    ]
    for value in payloads:
        producer.produce(topic, value=value)
    assert producer.flush(10) == 0
    pairs = RecentPairs(100)
    read = scan_paid(kafka, topic, pairs, threading.Event())
    assert read == 2
    for result in good:
        assert (result.request_id, result.candidate) in pairs


def test_a_stop_cuts_a_retry_wait_short_and_commits_nothing(
    kafka: dict[str, str], tmp_path: Path
) -> None:
    profile = {
        "name": "gpt-4o",
        "rate_limit_rate": 1.0,
        "retry_after_s": 20,
        "latency_median_ms": 5,
    }
    with simulated_models([profile]) as sim:
        settings = make_settings(
            tmp_path, kafka=kafka, topics=unique_topics(partitions=1),
            models=models_at(sim.base_url, "gpt-4", "gpt-4o"),
            routes=[route_config("gpt-4", "gpt-4o")],
            shadow={"max_retry_after_s": 30, "max_attempts": 3},
        )  # fmt: skip
        ensure_topics(kafka, settings.topics.partitions_of())
        produce(kafka, settings.topics.requests, [sample_request()])
        role = ShadowRole(settings, kafka)
        with running(role, join_timeout_s=15):  # each wait is 20 s: only a cut-short one fits
            wait_until(lambda: sim.requests_served >= 1, what=lambda: role.counters)
    assert role.counters.results == 0
    consumer = Consumer(consumer_config(kafka, settings.shadow.group_id))
    try:
        (committed,) = consumer.committed([TopicPartition(settings.topics.requests, 0)], timeout=10)
    finally:
        consumer.close()
    assert committed.offset < 0  # the request is replayed after a restart, not lost
