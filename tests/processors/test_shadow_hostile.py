"""Hostile input on the shadow role's own topics never stops it at start."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Producer

from processors.budget import RecentPairs
from processors.shadow import scan_paid
from shadowlab.core.kafka import producer_config
from shadowlab.testing import sample_shadow


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
