"""The sink role: every event topic into ClickHouse, at-least-once, poison to the DLQ.

One consumer group reads every event topic. Each batch of a topic is decoded as its event
type (:class:`~schemas.fast.BatchDecoder`: msgspec, with the pydantic model deciding whatever
msgspec declines); a message that cannot be decoded or validated goes to ``<topic>.dlq`` with
pydantic's error and the original bytes (the dead-letter contract of
:class:`~shadowlab.core.kafka.DeadLetter`), and the loop goes on. Valid events are buffered in a
:class:`~sinks.base.Sink` and written when the batch is full or old enough; offsets are
committed only after the write (and the DLQ deliveries) succeeded. While ClickHouse refuses
writes the role pauses its partitions, keeps its group membership, and retries the same batch
with backoff: nothing is lost.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import groupby
from typing import Any, TypeVar, cast

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from schemas import (
    Alert,
    Comparison,
    Event,
    FeedbackEvent,
    GateDecision,
    Judgement,
    RequestEvent,
    RoutingFlags,
    ShadowResult,
)
from schemas.fast import BatchDecoder, DecodedBatch
from shadowlab.core.errors import ClickHouseError
from shadowlab.core.gcpause import gc_paused
from shadowlab.core.kafka import (
    commit,
    consumer_config,
    dead_letter_of,
    partition_lag,
    produce_dead_letter,
    producer_config,
    without_errors,
)
from shadowlab.core.settings import Settings, TopicSettings
from sinks.base import Sink
from sinks.identity import digest

log = logging.getLogger(__name__)
T = TypeVar("T")

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


#: The longest the role keeps the cyclic collector paused while batches keep coming.
_MAX_PAUSE_S = 1.0


@dataclass
class _Job:
    """One decoded batch being written, and the offsets to commit once it is stored."""

    decoded: list[tuple[str, DecodedBatch[Any]]]
    offsets: list[TopicPartition]
    future: Future[None]


def _positions(consumer: Consumer) -> list[TopicPartition]:
    """The consumer's position (next offset) in each assigned partition it has read."""
    return [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]


class _StoppedUnstoredError(Exception):
    """Asked to stop while a write kept failing: no later batch may be committed."""


@dataclass(frozen=True)
class _Rows:
    """Decoded events and, for each row, the position of its message in the batch."""

    events: DecodedBatch[Any]
    positions: list[int]
    #: The SHA-256 of each row's message (what makes two copies the same), once computed.
    digests: list[str] | None = None


@dataclass
class SinkCounters:
    """What the sink did (per topic), for logs and tests."""

    written: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    #: Exact copies of stored events dropped (retries, redeliveries), per topic.
    retries: dict[str, int] = field(default_factory=dict)
    write_failures: int = 0
    #: Seconds the current write has been failing (0 while writes succeed).
    stalled_seconds: float = 0.0
    #: Dead letters the client refused (logged with where their input was read).
    undeliverable: int = 0


class SinkRole:
    """Consumes every event topic and writes it through ``sink`` until :meth:`stop`."""

    def __init__(self, settings: Settings, connection: Mapping[str, str], sink: Sink[Any]) -> None:
        self.settings = settings
        self.cfg = settings.sink
        self.sink = sink
        self.counters = SinkCounters()
        self._types = topic_types(settings.topics)
        self._band = settings.admission.band()
        self._connection = dict(connection)
        self._stop = threading.Event()
        self._decoders: dict[str, BatchDecoder[Any]] = {}
        #: (monotonic time of the first failure, its reason) while a write keeps failing.
        self._stalled: tuple[float, str] | None = None
        #: Messages left per (topic, partition), taken between polls (:func:`partition_lag`).
        self._lags: dict[tuple[str, int], int] = {}

    def stop(self) -> None:
        """Finish the current batch and return from :meth:`run`."""
        self._stop.set()

    def degraded(self) -> str | None:
        """Why the role is not doing its work while it runs (a failing write), else None."""
        stalled = self._stalled
        if stalled is None:
            return None
        since, reason = stalled
        return f"writes failing for {time.monotonic() - since:.0f} s: {reason}"

    def run(self) -> None:
        """The loop: consume, decode (or dead-letter), write, then commit, until stopped.

        Batch N is written in a writer thread while batch N+1 is consumed and decoded (the
        engine releases the GIL while it inserts); N's offsets are committed only once N
        is stored.
        """
        consumer = Consumer(consumer_config(self._connection, self.cfg.group_id))
        dlq = Producer(producer_config(self._connection, **{"linger.ms": "0"}))
        consumer.subscribe(list(self._types))
        writer = ThreadPoolExecutor(1, thread_name_prefix="sink-writer")
        try:
            while not self._stop.is_set():
                # The collector stays paused while batches flow, and resumes when the role is
                # idle or at least every _MAX_PAUSE_S, once the batches in flight are gone.
                with gc_paused():
                    self._busy_period(consumer, dlq, writer)
        except _StoppedUnstoredError as exc:
            log.warning("sink: stopped with a batch not stored (%s); it will be read again", exc)
        finally:
            writer.shutdown(wait=True, cancel_futures=True)
            consumer.close()
            dlq.flush(10)

    def partition_lag(self) -> dict[tuple[str, int], int]:
        """Messages not yet consumed per (topic, partition) at the last poll (any thread)."""
        return dict(self._lags)

    def _busy_period(self, consumer: Consumer, dlq: Producer, writer: ThreadPoolExecutor) -> None:
        """Pipeline batches until idle, stopped or _MAX_PAUSE_S passed; return with all stored."""
        started = time.monotonic()
        pending: _Job | None = None
        while True:
            batch = self._collect(consumer, 0.1 if pending is None else 0.01)
            idle = not batch
            if batch:
                decoded = self._retrying(
                    consumer, "reading stored ids", functools.partial(self._decode, batch, dlq)
                )
                offsets = _positions(consumer)
                del batch  # the messages die before the collector runs again
                prepared = self._prepare(decoded)  # while the writer stores the previous batch
                if pending is not None:  # commits in the stream need not wait for the broker
                    self._finish(pending, writer, consumer, dlq, wait_commit=False)
                pending = _Job(decoded, offsets, writer.submit(self._write, prepared))
            if idle or self._stop.is_set() or time.monotonic() - started >= _MAX_PAUSE_S:
                if pending is not None:
                    self._finish(pending, writer, consumer, dlq, wait_commit=True)
                return

    def _prepare(self, decoded: list[tuple[str, DecodedBatch[Any]]]) -> object:
        """The sink's encoded batch, or the :class:`ClickHouseError` encoding it raised."""
        for topic, events in decoded:
            self.sink.add(topic, events)
        try:
            return self.sink.prepare()
        except ClickHouseError as exc:
            return exc

    def _write(self, prepared: object) -> None:
        """Store a prepared batch (in the writer thread)."""
        if isinstance(prepared, ClickHouseError):
            raise prepared
        if prepared is not None:
            with gc_paused():
                self.sink.write(prepared)

    def _store(self, decoded: list[tuple[str, DecodedBatch[Any]]]) -> None:
        """Prepare and write a decoded batch again (in the writer thread, after a failure)."""
        with gc_paused():
            for topic, events in decoded:
                self.sink.add(topic, events)
            self.sink.flush()

    def _finish(
        self,
        job: _Job,
        writer: ThreadPoolExecutor,
        consumer: Consumer,
        dlq: Producer,
        *,
        wait_commit: bool,
    ) -> None:
        """Wait for a job's write (retrying it, partitions paused, until stored); commit it.

        ``wait_commit=False`` sends the commit without waiting for the broker's answer (the
        next batch's commit covers it if it fails; a busy period ends with a waited one).
        """

        def stored() -> None:
            try:
                job.future.result()
            except ClickHouseError:
                job.future = writer.submit(self._store, job.decoded)  # the next attempt
                raise
            if dlq.flush(30) > 0:
                raise ClickHouseError("dead-letter deliveries are still pending")

        self._retrying(consumer, "write", stored)
        if job.offsets:
            try:
                commit(consumer, job.offsets, asynchronous=not wait_commit)
            except KafkaException as exc:  # e.g. the partitions moved: they are redelivered
                log.warning("sink: commit failed (%s); the events will come again", exc)
        for topic, events in job.decoded:
            self.counters.written[topic] = self.counters.written.get(topic, 0) + events.count

    def _retrying(self, consumer: Consumer, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it does not raise :class:`ClickHouseError`, partitions paused.

        Meanwhile ``/health`` says degraded and the stall metric rises; asked to stop, it
        gives up (nothing after the failing batch is committed: it is read again).
        """
        delay = self.cfg.retry_base_s
        while True:
            try:
                result = attempt()
            except ClickHouseError as exc:
                self.counters.write_failures += 1
                if self._stalled is None:
                    self._stalled = (time.monotonic(), str(exc)[:300])
                if self._stop.is_set():
                    raise _StoppedUnstoredError(str(exc)) from None
                log.warning(
                    "sink: %s failed (%s); retrying in %.1f s, partitions paused", what, exc, delay
                )
                self._wait_paused(consumer, delay)
                delay = min(delay * 2, self.cfg.retry_max_s)
                continue
            self._stalled = None
            self.counters.stalled_seconds = 0.0
            return result

    def _collect(self, consumer: Consumer, timeout: float) -> list[Message]:
        """Consume until a batch is due (full, or its oldest message waited ``max_wait_s``).

        Returns an empty list after one empty poll (``timeout`` seconds), so an idle role does
        not hold the collector paused; stopping returns what was consumed so far.
        """
        batch: list[Message] = []
        oldest = 0.0
        size = self.cfg.batch_size
        while True:
            good = without_errors(consumer.consume(min(1000, size - len(batch)), timeout), "sink")
            self._lags = partition_lag(consumer) or {}  # between polls, in the role's thread
            if good and not batch:
                oldest = time.monotonic()
            batch += good
            if not batch or len(batch) >= size or self._stop.is_set():
                return batch
            if time.monotonic() - oldest >= self.cfg.max_wait_s:
                return batch

    def _decode(self, batch: list[Message], dlq: Producer) -> list[tuple[str, DecodedBatch[Any]]]:
        """The events of ``batch`` to store, per topic; the refused ones are dead-lettered.

        Refused: what does not decode or validate, what is dated outside the admission band,
        and an id stored before with other content; an exact copy of a stored event is
        dropped silently (a retry or a redelivery).
        """
        by_topic: dict[str, list[Message]] = {}
        for topic, run in groupby(batch, key=Message.topic):
            by_topic.setdefault(topic or "", []).extend(run)
        decoded: list[tuple[str, DecodedBatch[Any]]] = []
        refusals: list[tuple[Message, Exception]] = []  # sent once every lookup succeeded
        stored: list[_Rows] = []
        copies: dict[str, int] = {}  # exact copies dropped, counted once the batch is decided
        for topic, messages in by_topic.items():
            values: list[bytes | None] = list(map(Message.value, messages))
            if None in values:  # a tombstone is not an event: it goes to the DLQ
                values = [v or b"" for v in values]
            events = self._decoder(topic).decode(cast(list[bytes], values))
            refusals += [(messages[index], error) for index, error in events.rejected]
            rejected = {index for index, _ in events.rejected}
            rows = _Rows(events, [i for i in range(len(messages)) if i not in rejected])
            rows = _drop(rows, self._out_of_band(rows.events), messages, refusals)
            rows = dataclasses.replace(
                rows, digests=[digest(messages[p].value()) for p in rows.positions]
            )
            duplicates = self._duplicates(rows)
            rows = _drop(rows, duplicates, messages, refusals)
            decoded.append((topic, rows.events))
            stored.append(rows)
            copies[topic] = sum(1 for error in duplicates.values() if error is None)
        for message, error in refusals:
            self._dead_letter(dlq, message, error)
        for rows in stored:  # from now on these are stored: later copies are retries
            self.sink.remember(rows.events, rows.digests or [])
        for topic, count in copies.items():
            if count:
                self.counters.retries[topic] = self.counters.retries.get(topic, 0) + count
        return decoded

    def _out_of_band(self, events: DecodedBatch[Any]) -> dict[int, Exception | None]:
        """The rows dated outside the admission band, with the reason."""
        if "event_time" not in events.fields or not events.count:
            return {}
        times = events.columns[events.fields.index("event_time")]
        now = dt.datetime.now(dt.UTC)
        if self._band.refusal(max(times), now) is None and (
            self._band.max_age_s is None or self._band.refusal(min(times), now) is None
        ):
            return {}  # the whole batch is inside the band: the common case
        return {k: r for k, when in enumerate(times) if (r := self._band.refusal(when, now))}

    def _duplicates(self, rows: _Rows) -> dict[int, Exception | None]:
        """Rows whose id is stored: ``None`` for an exact copy, else the conflict."""
        if not rows.events.count:
            return {}
        verdicts = self.sink.verdicts(rows.events, rows.digests or [])
        out: dict[int, Exception | None] = {}
        for k, verdict in enumerate(verdicts):
            if verdict == "retry":
                out[k] = None
            elif verdict == "conflict":
                out[k] = self.sink.conflict(rows.events, k)
        return out

    def _decoder(self, topic: str) -> BatchDecoder[Any]:
        decoder = self._decoders.get(topic)
        if decoder is None:
            decoder = self._decoders[topic] = self.sink.decoder(self._types[topic])
        return decoder

    def _dead_letter(self, dlq: Producer, message: Message, error: Exception) -> None:
        topic = message.topic() or ""
        suffix = self.settings.topics.dlq_suffix
        letter = dead_letter_of(message, role="sink", error=error, dlq_suffix=suffix)
        if not produce_dead_letter(dlq, letter):
            self.counters.undeliverable += 1
        self.counters.dead_lettered[topic] = self.counters.dead_lettered.get(topic, 0) + 1

    def _wait_paused(self, consumer: Consumer, seconds: float) -> None:
        """Wait without consuming, but keep polling so the group keeps this member."""
        assignment = consumer.assignment()
        consumer.pause(assignment)
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not self._stop.is_set():
                consumer.consume(1, 0.1)  # paused: returns nothing, serves the group
                if self._stalled is not None:
                    self.counters.stalled_seconds = time.monotonic() - self._stalled[0]
        finally:
            consumer.resume(assignment)


def _drop(
    rows: _Rows,
    refused: Mapping[int, Exception | None],
    messages: list[Message],
    refusals: list[tuple[Message, Exception]],
) -> _Rows:
    """``rows`` without ``refused``; a refusal with a reason is added to ``refusals``."""
    if not refused:
        return rows
    for row, error in refused.items():
        if error is not None:
            refusals.append((messages[rows.positions[row]], error))
    keep = [k for k in range(rows.events.count) if k not in refused]
    columns: list[Sequence[Any]] = [[c[k] for k in keep] for c in rows.events.columns]
    events = dataclasses.replace(rows.events, columns=columns, count=len(keep))
    digests = [rows.digests[k] for k in keep] if rows.digests is not None else None
    return _Rows(events, [rows.positions[k] for k in keep], digests)
