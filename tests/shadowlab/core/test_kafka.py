"""The role plumbing every role shares: the dead-letter contract and the batch loop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from schemas import EventValidationError, RequestEvent
from shadowlab.core.kafka import (
    DEAD_LETTER_KEY_MAX_BYTES,
    DEAD_LETTER_VALUE_MAX_BYTES,
    ERROR_HEADER_MAX_BYTES,
    BatchLoop,
    consumer_config,
    dead_letter,
    error_header,
    flush_all,
    partition_lag,
    produce_dead_letter,
    producer_config,
)
from shadowlab.testing import produce, read_messages, sample_request

DLQ_HEADERS = {
    "error",
    "error.class",
    "role",
    "source.topic",
    "source.partition",
    "source.offset",
    "source.length",
    "source.sha256",
}


def test_a_dead_letter_carries_the_original_bytes_and_every_contract_header() -> None:
    try:
        RequestEvent.from_json(b'{"request_id": 1}')
    except EventValidationError as exc:
        error = exc
    letter = dead_letter(
        role="shadow",
        error=error,
        source=("llm.requests", 3, 41),
        key=b"req-1",
        value=b'{"request_id": 1}',
        dlq_suffix=".dlq",
    )
    headers = dict(letter.headers)
    assert letter.topic == "llm.requests.dlq"
    assert (letter.key, letter.value) == (b"req-1", b'{"request_id": 1}')
    assert set(headers) == DLQ_HEADERS
    assert headers["error"].startswith(b"invalid RequestEvent")
    assert headers["error.class"] == b"EventValidationError"
    assert headers["role"] == b"shadow"
    assert (headers["source.topic"], headers["source.partition"], headers["source.offset"]) == (
        b"llm.requests",
        b"3",
        b"41",
    )


@pytest.mark.parametrize("text", ["x" * 10_000, "é" * 10_000, "€" * 1333 + "x" * 5])
def test_the_error_header_is_cut_to_its_documented_length_at_a_character(text: str) -> None:
    header = error_header(text)
    assert len(header) <= ERROR_HEADER_MAX_BYTES
    assert header.decode("utf-8").endswith("…")  # still valid UTF-8, marked as cut
    assert text.startswith(header.decode("utf-8")[:-1])


def test_a_huge_input_is_dead_lettered_as_its_head_with_its_length_and_digest() -> None:
    value = b'{"answer": "' + b"x" * 2_000_000 + b'"'
    letter = dead_letter(
        role="sink",
        error=ValueError("too big"),
        source=("llm.shadow", 0, 7),
        key=b"k" * 5000,
        value=value,
        dlq_suffix=".dlq",
    )
    headers = dict(letter.headers)
    assert letter.value == value[:DEAD_LETTER_VALUE_MAX_BYTES]
    assert letter.key == b"k" * DEAD_LETTER_KEY_MAX_BYTES
    assert headers["source.length"] == str(len(value)).encode()
    assert headers["source.sha256"] == hashlib.sha256(value).hexdigest().encode()


def test_a_dead_letter_the_client_refuses_is_reported_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": "1000"})
    letter = dead_letter(
        role="judge",
        error=ValueError("bad"),
        source=("llm.requests", 2, 99),
        key=None,
        value=b"x" * 5000,
        dlq_suffix=".dlq",
    )
    assert produce_dead_letter(producer, letter) is False
    assert "llm.requests[2]@99" in caplog.text


def test_a_short_error_is_kept_whole() -> None:
    assert error_header("bad field") == b"bad field"


def test_flush_all_refuses_to_stop_with_deliveries_pending() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.timeout.ms": "60000"})
    producer.produce("nowhere", value=b"x")
    stop = threading.Event()
    stop.set()
    with pytest.raises(RuntimeError, match="undelivered results; offsets not committed"):
        flush_all(producer, stop, "results")


def _committed(kafka: dict[str, str], topic: str, group: str) -> int:
    consumer = Consumer(consumer_config(kafka, group))
    try:
        (position,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return position.offset
    finally:
        consumer.close()


def _loop(kafka: dict[str, str], topic: str, group: str) -> tuple[BatchLoop, Consumer, Producer]:
    # the default session timeout: Apache Kafka refuses one below group.min.session.timeout.ms
    # (6 s), and the consumer then never joins (the embedded broker takes any)
    consumer = Consumer(consumer_config(kafka, group))
    consumer.subscribe([topic])
    producer = Producer(producer_config(kafka, **{"linger.ms": "0"}))
    return (
        BatchLoop("test", consumer, producer, threading.Event(), 100, "copies"),
        consumer,
        producer,
    )


def _run(loop: BatchLoop, process: Callable[[list[Message]], object]) -> None:
    async def step(batch: list[Message]) -> None:
        process(batch)

    asyncio.run(loop.run(step))


def test_the_loop_commits_only_after_the_outputs_were_delivered(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    source, sink = topic_factory("loop-in"), topic_factory("loop-out")
    produce(kafka, source, [sample_request() for _ in range(5)])
    group = f"loop-{uuid.uuid4().hex[:8]}"
    loop, consumer, producer = _loop(kafka, source, group)
    seen: list[bytes] = []

    def copy(batch: list[Message]) -> None:
        for message in batch:
            producer.produce(sink, value=message.value())
            seen.append(message.value() or b"")
        if len(seen) >= 5:
            loop.stop.set()

    try:
        _run(loop, copy)
    finally:
        consumer.close()
    assert len(read_messages(kafka, sink, 5)) == 5
    assert _committed(kafka, source, group) == 5


def test_a_failing_batch_commits_nothing(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    source = topic_factory("loop-fail")
    produce(kafka, source, [sample_request() for _ in range(3)])
    group = f"loop-{uuid.uuid4().hex[:8]}"
    loop, consumer, _producer = _loop(kafka, source, group)

    def fail(_batch: list[Message]) -> None:
        raise ValueError("the role could not process this batch")

    try:
        with pytest.raises(ValueError, match="could not process"):
            _run(loop, fail)
    finally:
        consumer.close()
    assert _committed(kafka, source, group) < 0  # no offset was ever committed


def test_partition_lag_counts_what_each_partition_has_left_to_read(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("lag", 2)
    producer = Producer(producer_config(kafka, **{"linger.ms": "0"}))
    for partition, count in ((0, 7), (1, 3)):
        for _ in range(count):
            producer.produce(topic, b"x", partition=partition)
    assert producer.flush(30) == 0
    consumer = Consumer(consumer_config(kafka, f"lag-{uuid.uuid4().hex[:8]}"))
    assert partition_lag(None) is None
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        read = 0
        while read < 2:  # two of partition 0's seven: its fetch brought the high watermark
            message = consumer.poll(1.0)
            read += message is not None and message.error() is None
        assert partition_lag(consumer) == {(topic, 0): 5}
        consumer.assign([TopicPartition(topic, 0, 2), TopicPartition(topic, 1, 0)])
        while read < 10:
            message = consumer.poll(1.0)
            read += message is not None and message.error() is None
        assert partition_lag(consumer) == {(topic, 0): 0, (topic, 1): 0}
    finally:
        consumer.close()
    assert partition_lag(consumer) is None  # closed: unknown
