"""Kafka for every role: client configs, topic creation, and the role plumbing.

The plumbing is written once for every role: the dead-letter contract (:class:`DeadLetter`:
what a refused input looks like on ``<topic>.dlq``) and the consume → process → flush →
commit loop (:class:`BatchLoop`, :func:`flush_all`, :func:`commit`).

The consumer and producer defaults follow ``notes/embedded-broker-compatibility.md``: they
are right for Apache Kafka and keep the embedded broker (Tansu) fast (short session timeout,
short fetch wait, ``range`` assignment, no KIP-848, no metrics push).
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shadowlab.core.errors import StackError

log = logging.getLogger(__name__)

#: Consumer settings that hold on both brokers (see the module docstring).
CONSUMER_DEFAULTS: dict[str, str] = {
    "session.timeout.ms": "6000",
    "heartbeat.interval.ms": "500",
    "fetch.wait.max.ms": "50",
    "partition.assignment.strategy": "range",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": "false",
    "enable.metrics.push": "false",
}


def murmur2_partition(key: bytes, partitions: int) -> int:
    """The partition the Java client's default partitioner gives ``key`` (murmur2).

    ``(murmur2(key) & 0x7fffffff) % partitions``, Kafka's ``Utils.murmur2`` (seed
    ``0x9747b28c``): what librdkafka's ``murmur2_random``, faust/aiokafka and Java/Go
    clients place a keyed record on. The join uses it to notice a producer that placed a
    request or a shadow result elsewhere (another partitioner).
    """
    m, h = 0x5BD1E995, (0x9747B28C ^ len(key)) & 0xFFFFFFFF
    whole = len(key) & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


#: Producer settings: idempotent, durable, lz4-compressed, short linger. Keys are placed with
#: the Java client's murmur2 hash, so a request and its shadow results (keyed by request_id)
#: share a partition number with what faust (aiokafka) and Java/Go services produce: the
#: join relies on that co-partitioning.
PRODUCER_DEFAULTS: dict[str, str] = {
    "partitioner": "murmur2_random",
    "enable.idempotence": "true",
    "acks": "all",
    "compression.type": "lz4",
    "linger.ms": "5",
    "message.timeout.ms": "30000",
    "enable.metrics.push": "false",
}


def consumer_config(
    connection: Mapping[str, str], group_id: str, **overrides: str
) -> dict[str, str]:
    """Return a confluent-kafka consumer config: connection + defaults + overrides."""
    return {**connection, **CONSUMER_DEFAULTS, "group.id": group_id, **overrides}


def producer_config(connection: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """Return a confluent-kafka producer config: connection + defaults + overrides."""
    return {**connection, **PRODUCER_DEFAULTS, **overrides}


def ensure_topics(
    connection: Mapping[str, str],
    partitions: Mapping[str, int],
    replication_factor: int = -1,
    timeout_s: float = 15.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; existing ones are left as they are.

    ``replication_factor`` -1 takes the broker's ``default.replication.factor`` (3 on a
    production cluster, 1 on a single node), never a hard-coded 1 that would leave a
    cluster's topics unreplicated. ``configs`` are topic configs by name
    (``cleanup.policy``, ``retention.ms``…), set at creation.

    Returns:
        The names of the topics this call created.

    Raises:
        StackError: Kafka cannot be reached, or naming the topic and the broker's error when
            creation failed.
    """
    admin = AdminClient(dict(connection))
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        where = connection.get("bootstrap.servers", "?")
        raise StackError(
            f"cannot reach Kafka at {where} ({exc.args[0].str() if exc.args else exc}); check "
            "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS and that the brokers are up"
        ) from None
    wanted = [
        NewTopic(
            name,
            num_partitions=count,
            replication_factor=replication_factor,
            config=dict((configs or {}).get(name, {})),
        )
        for name, count in partitions.items()
        if name not in existing
    ]
    if not wanted:
        return []
    futures = admin.create_topics(wanted, request_timeout=timeout_s)
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StackError(f"could not create topic {name!r}: {error}") from None
    return created


# -- the dead-letter contract ------------------------------------------------------------------

#: The longest ``error`` header, in UTF-8 bytes; a longer reason is cut and ends with ``…``.
ERROR_HEADER_MAX_BYTES = 4000
#: The most of the original value a dead letter keeps (its head); with the key and headers
#: it stays far below the broker's and librdkafka's 1 MB message limit.
DEAD_LETTER_VALUE_MAX_BYTES = 256 * 1024
#: The most of the original key a dead letter keeps.
DEAD_LETTER_KEY_MAX_BYTES = 1024
_CUT = "…".encode()


@dataclass(frozen=True)
class DeadLetter:
    """An input a role could not process, as it goes to ``<source topic><dlq suffix>``.

    The value and key are the original bytes; the headers say why and where from:
    ``error`` (the reason, at most :data:`ERROR_HEADER_MAX_BYTES`), ``error.class`` (the
    exception's class), ``role`` (the role that refused it), ``source.topic``,
    ``source.partition`` and ``source.offset`` (where it was read), ``source.length`` and
    ``source.sha256`` (of the whole original value). A value over
    :data:`DEAD_LETTER_VALUE_MAX_BYTES` (a key over :data:`DEAD_LETTER_KEY_MAX_BYTES`) is
    kept as its head, so a dead letter always fits the broker's limit.
    """

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]


def error_header(reason: str) -> bytes:
    """``reason`` as the ``error`` header: UTF-8, cut to :data:`ERROR_HEADER_MAX_BYTES`."""
    data = reason.encode("utf-8", "replace")
    if len(data) <= ERROR_HEADER_MAX_BYTES:
        return data
    head = data[: ERROR_HEADER_MAX_BYTES - len(_CUT)].decode("utf-8", "ignore")
    return head.encode() + _CUT


def dead_letter(
    *,
    role: str,
    error: BaseException,
    source: tuple[str, int, int],
    key: bytes | None,
    value: bytes | None,
    dlq_suffix: str,
) -> DeadLetter:
    """The dead letter of the input read at ``source`` (topic, partition, offset)."""
    topic, partition, offset = source
    original = value or b""
    headers = (
        ("error", error_header(str(error))),
        ("error.class", type(error).__name__.encode()),
        ("role", role.encode()),
        ("source.topic", topic.encode()),
        ("source.partition", str(partition).encode()),
        ("source.offset", str(offset).encode()),
        ("source.length", str(len(original)).encode()),
        ("source.sha256", hashlib.sha256(original).hexdigest().encode()),
    )
    kept_key = key[:DEAD_LETTER_KEY_MAX_BYTES] if key is not None else None
    kept_value = value[:DEAD_LETTER_VALUE_MAX_BYTES] if value is not None else None
    return DeadLetter(topic + dlq_suffix, kept_key, kept_value, headers)


def dead_letter_of(
    message: Message, *, role: str, error: BaseException, dlq_suffix: str
) -> DeadLetter:
    """The dead letter of a consumed confluent-kafka ``message``."""
    source = (message.topic() or "", message.partition() or 0, message.offset() or 0)
    return dead_letter(
        role=role,
        error=error,
        source=source,
        key=message.key(),
        value=message.value(),
        dlq_suffix=dlq_suffix,
    )


def produce_dead_letter(producer: Producer, letter: DeadLetter) -> bool:
    """Hand ``letter`` to ``producer`` (delivered by the next :func:`flush_all`).

    Never raises (see :func:`produce_or_report`); ``False`` is for the role to count.
    """
    headers: list[tuple[str, str | bytes | None]] = list(letter.headers)
    return produce_or_report(
        producer, letter.topic, letter.value, letter.key, headers=headers,
        what=f"the dead letter of {_coordinates(letter)}",
    )  # fmt: skip


def produce_or_report(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes | str | None,
    *,
    what: str,
    headers: list[tuple[str, str | bytes | None]] | None = None,
) -> bool:
    """Produce one message; never raises, so one message never stops a role.

    A full local queue is drained (up to 5 s) and the message tried again; a message the
    client refuses (e.g. over the size limit) is logged naming ``what`` and ``False`` is
    returned for the caller to count.
    """
    for attempt in range(2):
        try:
            producer.produce(topic, value=value, key=key, headers=headers)
            return True
        except BufferError:
            if attempt == 0:
                producer.flush(5.0)
        except KafkaException as exc:
            log.error("could not produce %s to %s: %s", what, topic, exc)
            return False
    log.error("could not produce %s to %s: the producer's queue stayed full", what, topic)
    return False


def _coordinates(letter: DeadLetter) -> str:
    where = dict(letter.headers)
    return "{}[{}]@{}".format(
        *(where[name].decode() for name in ("source.topic", "source.partition", "source.offset"))
    )


# -- consume → process → flush → commit ------------------------------------------------------


def without_errors(messages: list[Message], role: str) -> list[Message]:
    """The messages that carry data; consumer errors (logged) are dropped."""
    good = [m for m in messages if m.error() is None]
    if len(good) < len(messages):
        for message in messages:
            if message.error() is not None:
                log.warning("%s consumer: %s", role, message.error())
    return good


def flush_all(producer: Producer, stop: threading.Event, what: str) -> None:
    """Wait until everything produced is delivered; while Kafka is down this waits.

    Raises:
        RuntimeError: asked to stop with deliveries still pending (offsets stay uncommitted).
    """
    while producer.flush(1.0) > 0:
        log.warning("waiting for Kafka to take %d %s", len(producer), what)
        if stop.is_set() and producer.flush(5.0) > 0:
            raise RuntimeError(f"stopping with undelivered {what}; offsets not committed")


def commit(
    consumer: Consumer,
    offsets: list[TopicPartition] | None = None,
    *,
    asynchronous: bool = False,
) -> None:
    """Commit ``offsets`` (default: the consumer's positions); nothing to commit is fine."""
    try:
        if offsets is None and asynchronous:
            consumer.commit(asynchronous=True)
        elif offsets is None:
            consumer.commit(asynchronous=False)
        elif asynchronous:
            consumer.commit(offsets=offsets, asynchronous=True)
        else:
            consumer.commit(offsets=offsets, asynchronous=False)
    except KafkaException as exc:
        error: Any = exc.args[0] if exc.args else None
        if not (isinstance(error, KafkaError) and error.code() == KafkaError._NO_OFFSET):
            raise


class StopRequested(Exception):  # noqa: N818 - control flow, not an error
    """Raised inside a batch asked to stop mid-way: the loop returns, committing nothing."""


async def sleep_unless_stopped(seconds: float, stop: threading.Event | None) -> None:
    """Sleep ``seconds`` (a retry's backoff), or raise :class:`StopRequested` once ``stop``.

    Raises:
        StopRequested: the role was asked to stop; the batch is read again after a restart.
    """
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if stop is not None and stop.is_set():
            raise StopRequested
        await asyncio.sleep(min(left, 0.1))


@dataclass
class BatchLoop:
    """One consume → process → flush → commit loop, the same for every async role.

    Each batch's outputs (and dead letters) are produced by ``process``, all delivered
    (:func:`flush_all`), then ``delivered`` runs, then the offsets are committed: a crash
    at any point redelivers the batch, never loses it (at-least-once). A ``process`` that
    raises :class:`StopRequested` (a retry's wait cut short by a stop) ends the loop with
    nothing committed.

    Args:
        role: the role's name, for logs.
        consumer: a subscribed consumer.
        producer: where ``process`` writes.
        stop: set to finish the current batch and return.
        batch_size: the most messages one batch takes.
        outputs: what the producer carries, for the log while Kafka is down.
    """

    role: str
    consumer: Consumer
    producer: Producer
    stop: threading.Event
    batch_size: int
    outputs: str = "results"
    poll_s: float = 0.2
    #: Messages left per (topic, partition) at the last poll (:func:`partition_lag`).
    lags: dict[tuple[str, int], int] = field(default_factory=dict)

    async def run(
        self,
        process: Callable[[list[Message]], Awaitable[None]],
        *,
        delivered: Callable[[], object] | None = None,
        idle: Callable[[], object] | None = None,
        report: Callable[[], object] | None = None,
        report_every_s: float = 10.0,
    ) -> None:
        """Loop until :attr:`stop`; ``idle`` runs after an empty poll, ``report`` periodically."""
        last_report = time.monotonic()
        while not self.stop.is_set():
            batch = await asyncio.to_thread(self.consumer.consume, self.batch_size, self.poll_s)
            # read here, between polls: the consumer is never called from two threads at once
            self.lags = partition_lag(self.consumer) or {}
            if batch:
                try:
                    await process(without_errors(batch, self.role))
                except StopRequested:  # nothing committed: the batch is read again
                    log.info("%s: stopped mid-batch; it will be read again", self.role)
                    return
                await asyncio.to_thread(flush_all, self.producer, self.stop, self.outputs)
                if delivered is not None:
                    delivered()
                commit(self.consumer)
            elif idle is not None:
                idle()
            if report is not None and time.monotonic() - last_report >= report_every_s:
                report()
                last_report = time.monotonic()


@dataclass
class BatchCounters:
    """What every :class:`BatchRole` counts; a role's own counters extend it."""

    consumed: int = 0
    #: Inputs refused: malformed, or dated outside the admission band (to the DLQ).
    malformed: int = 0
    #: Outputs and dead letters the Kafka client refused (each logged); the role goes on.
    undeliverable: int = 0
    in_flight: int = 0
    #: Inputs not acted on, by reason (``sampled_out``, ``stage``, ``budget_usd``…).
    skipped: collections.Counter[str] = field(default_factory=collections.Counter)


class BatchRole:
    """What every asyncio role built on :class:`BatchLoop` shares: start, stop, lag.

    A subclass implements :meth:`run_async` (build the consumer, keep it in ``_consumer``,
    run a :class:`BatchLoop` on ``_stop``); :meth:`run` runs it in the calling thread.
    """

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._consumer: Consumer | None = None
        self._batch_loop: BatchLoop | None = None

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""
        self._stop.set()

    def run(self) -> None:
        """Run the loop in this thread until :meth:`stop`."""
        asyncio.run(self.run_async())

    async def run_async(self) -> None:
        """The role's loop (a subclass's)."""
        raise NotImplementedError

    def lag(self) -> int | None:
        """Messages not yet consumed, from the last fetch's high watermarks (None: unknown).

        Exact on Apache Kafka; the embedded broker reports end offsets wrongly, so there it
        is only indicative.
        """
        lags = partition_lag(self._consumer)
        return None if lags is None else sum(lags.values())

    def partition_lag(self) -> dict[tuple[str, int], int]:
        """The lag per (topic, partition) at the loop's last poll (empty before the first).

        A snapshot the loop takes between polls: safe to read from any thread (the admin
        API's), unlike the consumer itself.
        """
        loop = self._batch_loop
        return dict(loop.lags) if loop is not None else {}


def partition_lag(consumer: Consumer | None) -> dict[tuple[str, int], int] | None:
    """Messages not yet consumed per assigned (topic, partition).

    From the high watermarks of the consumer's last fetches (no broker request). ``None``:
    unknown (no consumer, or it is closed). Call it from the consumer's own thread, between
    polls: from another thread, while the consumer polls, it can wait for the poll.
    """
    if consumer is None:
        return None
    try:
        out: dict[tuple[str, int], int] = {}
        for tp in consumer.position(consumer.assignment()):
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0 and tp.offset >= 0:
                out[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        return out
    except (KafkaException, RuntimeError):
        return None
        try:
            total = 0
            for tp in consumer.position(consumer.assignment()):
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    total += max(0, high - tp.offset)
            return total
        except (KafkaException, RuntimeError):
            return None
