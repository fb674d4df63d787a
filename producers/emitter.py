"""The EventProducer: what a service calls on its request path; Kafka never blocks it.

``emit_request`` / ``emit_feedback`` serialize the event and hand it to a confluent-kafka
idempotent producer (acks=all, lz4, linger). When the broker is unreachable, or librdkafka's
queue is full, or a delivery fails, the message goes to the local spill :class:`Journal`
instead; a background thread replays the journal, in order, once Kafka answers again, and
new events go through the journal meanwhile so the order holds.

After Kafka has been unreachable the librdkafka producer is replaced by a new one: an
idempotent producer whose broker lost its state (a restarted embedded broker, or an expired
producer id) would otherwise retry forever with ``UNKNOWN_PRODUCER_ID``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from producers.journal import FsyncPolicy, Journal
from schemas import Event, FeedbackEvent, RequestEvent
from shadowlab.core.kafka import producer_config

log = logging.getLogger(__name__)

_DOWN_CODES = {KafkaError._ALL_BROKERS_DOWN}
#: Refusals no retry can cure: the message is over the client's ``message.max.bytes`` or
#: the broker's ``max.message.bytes`` (1 MB on Apache Kafka). Spilled, it would be replayed
#: and refused forever, holding back every event after it.
_TOO_LARGE = {KafkaError.MSG_SIZE_TOO_LARGE}  # local and broker refusals alike
_BACKGROUND_NICE = 10


def _too_large(error: object) -> bool:
    return isinstance(error, KafkaError) and error.code() in _TOO_LARGE


def _lower_priority() -> None:
    """Run this background thread at a lower CPU priority than the caller's request path."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _BACKGROUND_NICE)


@dataclass
class ProducerStats:
    """Counters a service can export as metrics."""

    emitted: int = 0
    spilled: int = 0
    replayed: int = 0
    delivery_failures: int = 0
    producer_restarts: int = 0
    #: Calls whose event could not be built: written to the dead-letter file, with why.
    dead_lettered: int = 0


class EventProducer:
    """Emits shadowlab events to Kafka without ever blocking or failing the caller.

    Args:
        connection: librdkafka connection config (``bootstrap.servers``, security…).
        journal_path: the spill journal file.
        requests_topic: topic for :class:`RequestEvent`.
        feedback_topic: topic for :class:`FeedbackEvent`.
        fsync: journal fsync policy (``interval`` fsyncs every ``fsync_interval_s``).
        queue_max_messages: librdkafka's in-memory queue bound; beyond it events spill.
        overrides: extra librdkafka producer properties.
    """

    def __init__(
        self,
        connection: Mapping[str, str],
        journal_path: Path | str,
        *,
        requests_topic: str = "llm.requests",
        feedback_topic: str = "llm.feedback",
        fsync: FsyncPolicy = "interval",
        fsync_interval_s: float = 0.2,
        queue_max_messages: int = 200_000,
        **overrides: str,
    ) -> None:
        self.stats = ProducerStats()
        self.requests_topic = requests_topic
        self.feedback_topic = feedback_topic
        self._conf: dict[str, Any] = {
            **producer_config(
                connection,
                **{
                    "queue.buffering.max.messages": str(queue_max_messages),
                    "message.timeout.ms": "15000",
                    **overrides,
                },
            ),
            # only failures call back into Python: the poll thread barely takes the GIL
            "delivery.report.only.error": True,
        }
        self._journal = Journal(journal_path, fsync=fsync)
        #: Where events that cannot be built go, one JSON line each with the reason.
        self.dead_letter_path = Path(journal_path).with_name(Path(journal_path).name + ".dead")
        self._dead_letter_lock = threading.Lock()
        self._fsync_interval_s = fsync_interval_s
        self._spilling = self._journal.pending() > 0
        self._broker_down = threading.Event()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._producer = self._new_producer()
        self._threads = [
            threading.Thread(target=self._poll_loop, name="events-poll", daemon=True),
            threading.Thread(target=self._replay_loop, name="events-replay", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- the caller's path -------------------------------------------------------------

    def emit_request(self, event: RequestEvent) -> None:
        """Send a :class:`RequestEvent` (keyed by request_id).

        Raises:
            TypeError: ``event`` is not a RequestEvent (a programming error).
        """
        if not isinstance(event, RequestEvent):
            raise TypeError(f"emit_request takes a RequestEvent, not {type(event).__name__}")
        self._emit(self.requests_topic, event.request_id, event)

    def emit_feedback(self, event: FeedbackEvent) -> None:
        """Send a :class:`FeedbackEvent` (keyed by request_id).

        Raises:
            TypeError: ``event`` is not a FeedbackEvent (a programming error).
        """
        if not isinstance(event, FeedbackEvent):
            raise TypeError(f"emit_feedback takes a FeedbackEvent, not {type(event).__name__}")
        self._emit(self.feedback_topic, event.request_id, event)

    def dead_letter(self, kind: str, data: Mapping[str, Any], reason: str) -> None:
        """Keep an event that could not be built: its raw data and the reason, on disk.

        One JSON line in :attr:`dead_letter_path` (values that are not JSON as their
        ``repr``), counted in ``stats.dead_lettered``; never raises, so a bad event can
        never fail the service's call.
        """
        line = json.dumps(
            {"at": dt.datetime.now(dt.UTC).isoformat(), "kind": kind, "reason": reason,
             "data": data},
            default=repr,
        )  # fmt: skip
        self.stats.dead_lettered += 1
        try:
            with self._dead_letter_lock, self.dead_letter_path.open("a", encoding="utf-8") as out:
                out.write(line + "\n")
        except OSError:
            log.exception("could not write the dead letter of a %s to %s", kind,
                          self.dead_letter_path)  # fmt: skip

    def _emit(self, topic: str, key: str, event: Event) -> None:
        payload = event.to_json()
        self.stats.emitted += 1
        if self._spilling:
            self._spill(topic, key.encode(), payload)
            return
        try:
            self._producer.produce(topic, payload, key)
        except KafkaException as exc:
            if _too_large(exc.args[0]):
                self._refused(topic, payload, exc.args[0])
            else:
                self._spill(topic, key.encode(), payload)
        except BufferError:
            self._spill(topic, key.encode(), payload)

    def _refused(self, topic: str, payload: bytes, error: KafkaError) -> None:
        """Dead-letter a message Kafka will never take (too large), with why."""
        log.warning("Kafka refused a %d-byte event for %s (%s): kept in %s", len(payload),
                    topic, error.str(), self.dead_letter_path)  # fmt: skip
        try:
            data: Any = json.loads(payload)
        except ValueError:
            data = payload.decode("utf-8", errors="replace")
        self.dead_letter(topic, {"event": data}, f"Kafka refused the {len(payload)}-byte "
                         f"message ({error.str()}): over message.max.bytes")  # fmt: skip

    def _spill(self, topic: str, key: bytes | None, value: bytes) -> None:
        self._journal.append(topic, key, value)
        self.stats.spilled += 1
        self._spilling = True
        self._wake.set()

    # -- background --------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        # One delivery callback for the producer, not one bound method per message: nothing
        # per emit for the garbage collector to track (a gen-2 pass costs milliseconds).
        conf: dict[str, Any] = {
            **self._conf,
            "error_cb": self._on_error,
            "on_delivery": self._on_delivery,
            "logger": log,
        }
        return Producer(conf)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() in _DOWN_CODES or error.fatal():
            if not self._broker_down.is_set():
                log.warning(
                    "Kafka unreachable (%s): spilling events to %s", error, self._journal.path
                )
            self._broker_down.set()
            self._spilling = True
            self._wake.set()

    def _on_delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        self.stats.delivery_failures += 1
        topic = message.topic() or self.requests_topic
        if _too_large(error):
            self._refused(topic, message.value() or b"", error)
            return
        self._spill(topic, message.key(), message.value() or b"")

    def _poll_loop(self) -> None:
        _lower_priority()
        last_sync = time.monotonic()
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if time.monotonic() - last_sync >= self._fsync_interval_s:
                if self._journal.fsync == "interval":
                    self._journal.sync()
                last_sync = time.monotonic()

    def _replay_loop(self) -> None:
        _lower_priority()  # producers made here (after an outage) inherit it for their threads
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            if not self._spilling:
                continue
            if self._broker_down.is_set():
                self._restart_producer()
            self._drain()

    def _restart_producer(self) -> None:
        """Swap in a fresh producer once the broker answers; spill what the old one held."""
        while not self._stop.is_set():
            candidate = self._new_producer()
            try:
                candidate.list_topics(timeout=1.0)
            except KafkaException:
                self._stop.wait(0.5)
                continue
            old, self._producer = self._producer, candidate
            self._broker_down.clear()
            self.stats.producer_restarts += 1
            old.purge()  # queued messages fail with _PURGE_QUEUE and spill to the journal
            old.poll(0)
            old.flush(0)
            log.info("Kafka reachable again: replaying the spill journal")
            return

    def _drain(self) -> None:
        while not self._stop.is_set() and not self._broker_down.is_set():
            records = self._journal.read(limit=200)
            if not records:
                # an append racing this check sets _spilling again itself (see _spill)
                self._spilling = self._journal.pending() > 0
                return
            producer = self._producer
            failures: list[KafkaError] = []

            def on_delivery(error: KafkaError | None, msg: Message) -> None:
                if error is not None and _too_large(error):  # never deliverable: kept aside
                    self._refused(msg.topic() or "", msg.value() or b"", error)
                elif error is not None:
                    failures.append(error)  # noqa: B023 - called during this batch's flush

            for record in records:
                try:
                    producer.produce(record.topic, record.value, record.key,
                                     on_delivery=on_delivery)  # fmt: skip
                except KafkaException as exc:
                    if not _too_large(exc.args[0]):
                        raise
                    self._refused(record.topic, record.value, exc.args[0])
                time.sleep(0)  # let the caller's thread take the GIL
            if producer.flush(30) > 0 or failures:
                log.warning("journal replay interrupted: %s", failures[:1] or "timeout")
                self._broker_down.set()
                return
            self.stats.replayed += len(records)
            if self._journal.confirm(records[-1].end):
                self._spilling = self._journal.pending() > 0

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def spilling(self) -> bool:
        """Whether new events currently go to the journal (Kafka down, or replay running)."""
        return self._spilling

    def pending(self) -> int:
        """Messages in librdkafka's queue plus bytes waiting in the journal (0 = all sent)."""
        return len(self._producer) + self._journal.pending()

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until everything emitted so far reached Kafka; returns whether it did."""
        deadline = time.monotonic() + timeout_s
        while self.pending() > 0:
            if time.monotonic() > deadline:
                return False
            self._producer.flush(min(0.1, max(0.0, deadline - time.monotonic())))
            self._wake.set()
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush what can be flushed, then stop; what was not sent stays in the journal."""
        self.flush(timeout_s)
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout=timeout_s)
        self._journal.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
