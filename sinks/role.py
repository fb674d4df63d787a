"""The sink role: every event topic into ClickHouse, at-least-once, poison to the DLQ.

One consumer group reads every event topic. Each message is decoded as its topic's event
type; one that cannot be decoded or validated goes to ``<topic>.dlq`` with the error and the
original bytes (headers ``error``, ``source.topic``, ``source.partition``, ``source.offset``),
and the loop goes on. Valid events are buffered in a :class:`~sinks.base.Sink` and written
when the batch is full or old enough; offsets are committed only after the write (and the
DLQ deliveries) succeeded. While ClickHouse refuses writes the role pauses its partitions,
keeps its group membership, and retries the same batch with backoff: nothing is lost.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Message, Producer

from schemas import (
    Alert,
    Comparison,
    Event,
    EventValidationError,
    FeedbackEvent,
    GateDecision,
    Judgement,
    RequestEvent,
    RoutingFlags,
    ShadowResult,
)
from shadowlab.exceptions import ClickHouseError
from shadowlab.gcpause import gc_paused
from shadowlab.kafka import consumer_config, producer_config
from shadowlab.settings import Settings, TopicSettings
from sinks.base import Sink

log = logging.getLogger(__name__)

_TYPES: dict[str, type[Event]] = {
    "requests": RequestEvent,
    "shadow": ShadowResult,
    "comparisons": Comparison,
    "judgements": Judgement,
    "feedback": FeedbackEvent,
    "flags": RoutingFlags,
    "decisions": GateDecision,
    "alerts": Alert,
}


def topic_types(topics: TopicSettings) -> dict[str, type[Event]]:
    """Return ``{topic name: event type}`` for every event topic."""
    return {name: _TYPES[key] for key, name in topics.event_topics().items()}


@dataclass
class SinkCounters:
    """What the sink did (per topic), for logs and tests."""

    written: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    write_failures: int = 0


class SinkRole:
    """Consumes every event topic and writes it through ``sink`` until :meth:`stop`."""

    def __init__(self, settings: Settings, connection: Mapping[str, str], sink: Sink) -> None:
        self.settings = settings
        self.cfg = settings.sink
        self.sink = sink
        self.counters = SinkCounters()
        self._types = topic_types(settings.topics)
        self._connection = dict(connection)
        self._stop = threading.Event()

    def stop(self) -> None:
        """Finish the current batch and return from :meth:`run`."""
        self._stop.set()

    def run(self) -> None:
        """The loop: consume, decode (or dead-letter), write when due, then commit."""
        consumer = Consumer(consumer_config(self._connection, self.cfg.group_id))
        dlq = Producer(producer_config(self._connection, **{"linger.ms": "0"}))
        consumer.subscribe(list(self._types))
        batch: list[Message] = []
        oldest = 0.0
        try:
            while not self._stop.is_set():
                for message in consumer.consume(min(1000, self.cfg.batch_size), 0.1):
                    if message.error() is not None:
                        log.warning("sink consumer: %s", message.error())
                        continue
                    if not batch:
                        oldest = time.monotonic()
                    batch.append(message)
                due = len(batch) >= self.cfg.batch_size or (
                    batch and time.monotonic() - oldest >= self.cfg.max_wait_s
                )
                if due:
                    self._write(batch, consumer, dlq)
                    consumer.commit(asynchronous=False)
                    batch = []
            if batch:
                self._write(batch, consumer, dlq)
                consumer.commit(asynchronous=False)
        finally:
            consumer.close()
            dlq.flush(10)

    def _write(self, batch: list[Message], consumer: Consumer, dlq: Producer) -> None:
        """Decode ``batch`` once, then write it; retry (partitions paused) until stored."""
        with gc_paused():
            events = self._decode(batch, dlq)
        delay = self.cfg.retry_base_s
        while True:
            try:
                with gc_paused():
                    for topic, partition, event in events:
                        self.sink.add(topic, partition, event)
                    self.sink.flush()  # the sink's buffer is cleared even when this fails
                if dlq.flush(30) > 0:
                    raise ClickHouseError("dead-letter deliveries are still pending")
            except ClickHouseError as exc:
                self.counters.write_failures += 1
                log.warning(
                    "sink: write failed (%s); retrying in %.1f s, partitions paused", exc, delay
                )
                self._wait_paused(consumer, delay)
                delay = min(delay * 2, self.cfg.retry_max_s)
                continue
            for topic, _partition, _event in events:
                self.counters.written[topic] = self.counters.written.get(topic, 0) + 1
            return

    def _decode(self, batch: list[Message], dlq: Producer) -> list[tuple[str, int, Event]]:
        """The valid events of ``batch``; the others go to the dead-letter topic."""
        events: list[tuple[str, int, Event]] = []
        for message in batch:
            topic = message.topic() or ""
            try:
                events.append(
                    (
                        topic,
                        message.partition() or 0,
                        self._types[topic].from_json(message.value() or b""),
                    )
                )
            except EventValidationError as exc:
                self._dead_letter(dlq, message, str(exc))
        return events

    def _dead_letter(self, dlq: Producer, message: Message, reason: str) -> None:
        topic = message.topic() or ""
        dlq.produce(
            topic + self.settings.topics.dlq_suffix,
            value=message.value(),
            key=message.key(),
            headers=[
                ("error", reason.encode()[:8000]),
                ("source.topic", topic.encode()),
                ("source.partition", str(message.partition()).encode()),
                ("source.offset", str(message.offset()).encode()),
            ],
        )
        self.counters.dead_lettered[topic] = self.counters.dead_lettered.get(topic, 0) + 1

    def _wait_paused(self, consumer: Consumer, seconds: float) -> None:
        """Wait without consuming, but keep polling so the group keeps this member."""
        assignment = consumer.assignment()
        consumer.pause(assignment)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                consumer.consume(1, 0.1)  # paused: returns nothing, serves the group
        finally:
            consumer.resume(assignment)
