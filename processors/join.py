"""The join role (faust): ``llm.requests`` ⋈ ``llm.shadow`` by request_id → ``llm.comparisons``.

One faust agent reads both topics (co-partitioned: both are keyed by request_id with the Java
client's murmur2 placement, the same number of partitions) and keeps one entry per request in
a changelog-backed faust table; :mod:`processors.pairing` decides what each event does to its
entry and which :class:`~schemas.Comparison` events to emit. A timer emits ``missing`` for
requests whose expected candidates did not arrive within ``join.window_s``.

Delivery is at-least-once, and a failure never acks what was not processed: the agent reads
with acks off and acks an event only after its comparisons and table write were handed to
the producer (faust flushes the producer before it commits). faust's own ``Stream.take()``
acks its whole buffer when the body raises; we do not use it. A malformed event goes to
``<topic>.dlq`` with the reason and is acked (errors are data); any other failure stops the
role (``run`` raises :class:`~shadowlab.core.errors.JoinFailedError`) with the failed event
and everything after it uncommitted, so a restart processes them again (except an event
faust had skipped and the join read directly: faust may have committed past it, see
:mod:`processors.catchup`). Redelivered events change nothing (see :mod:`processors.pairing`).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from mode.supervisors import CrashingSupervisor

from processors.budget import replay_candidates
from processors.catchup import (
    KeptTopic,
    OffsetGuard,
    RawEvent,
    as_faust_message,
    committed_offsets,
    read_range,
)
from processors.pairing import Step, on_request, on_shadow, on_tick
from schemas import Comparison, EventValidationError, RequestEvent, ShadowResult
from shadowlab.core.errors import EventTimeOutOfBandError, JoinFailedError
from shadowlab.core.kafka import dead_letter, murmur2_partition
from shadowlab.core.settings import CandidateConfig, JoinSettings, Settings

log = logging.getLogger(__name__)


@dataclass
class JoinCounters:
    """What the join did, for logs, metrics and tests."""

    consumed: int = 0
    #: Events refused: malformed, or dated outside the admission band (to the DLQ).
    malformed: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    comparisons: collections.Counter[str] = field(default_factory=collections.Counter)
    open_entries: int = 0
    #: Events faust skipped and the join read directly (see :mod:`processors.catchup`).
    caught_up: int = 0
    #: Timer ticks done (each looks at every entry's window).
    ticks: int = 0
    #: Events on another partition than murmur2 places their request_id on: a producer
    #: with another partitioner (its request and results may never meet in one worker).
    misplaced: int = 0


@dataclass(frozen=True)
class FailedEvent:
    """Where the join stopped: the event whose processing raised, and why."""

    topic: str
    partition: int
    offset: int
    error: BaseException


class JoinRole:
    """Runs the faust join in its own event loop until :meth:`stop` (thread-friendly).

    Args:
        settings: topics, routes (the candidates to expect) and ``join``.
        bootstrap_servers: where Kafka is (``host:port[,…]``).
        stage_of: the route's rollout stage when routing flags are known (as for the shadow
            role: candidates are expected only in ``shadow`` and ``canary``).
        embedded: Kafka is the embedded broker (one message per producer batch unless
            ``join.producer_max_batch_size`` says otherwise; see the settings).
    """

    def __init__(
        self,
        settings: Settings,
        bootstrap_servers: str,
        *,
        stage_of: Callable[[str], str | None] | None = None,
        embedded: bool = False,
        report_every_s: float = 10.0,
    ) -> None:
        self.settings = settings
        self._band = settings.admission.band()
        self._misplaced_logged = -math.inf
        self.cfg: JoinSettings = settings.join
        self.counters = JoinCounters()
        self.failed: FailedEvent | None = None
        self._servers = bootstrap_servers
        self._stage_of = stage_of
        self._embedded = embedded
        self._report_every_s = report_every_s
        self._candidates: dict[str, list[CandidateConfig]] = {
            r.name: list(r.candidates) for r in settings.routes
        }
        self._stop = threading.Event()
        #: When this run began consuming; time before it does not count against a window.
        self._since = time.time()
        self._guard = OffsetGuard()

    def stop(self) -> None:
        """Ask the role to stop (it commits what it processed) and return from :meth:`run`."""
        self._stop.set()

    def run(self) -> None:
        """Run until :meth:`stop`.

        Raises:
            JoinFailedError: processing an event failed; nothing from that event on was acked.
        """
        asyncio.run(self._run_async())
        if self.failed is not None:
            f = self.failed
            raise JoinFailedError(
                f"join stopped at {f.topic}[{f.partition}]@{f.offset}: {f.error!r}; "
                "that event and the ones after it were not committed: restart the role "
                "to process them again"
            ) from f.error

    async def _run_async(self) -> None:
        app = self._faust_app()
        await app.start()
        last_report = time.monotonic()
        try:
            while not self._stop.is_set() and not app.should_stop:
                await asyncio.sleep(0.05)
                if time.monotonic() - last_report >= self._report_every_s:
                    self.report()
                    last_report = time.monotonic()
        finally:
            await app.stop()

    def report(self) -> None:
        """Log one line of counters."""
        c = self.counters
        log.info(
            "join: consumed %d, comparisons %s, outcomes %s, open %d, malformed %d, caught up %d",
            c.consumed,
            dict(c.comparisons),
            dict(c.outcomes),
            c.open_entries,
            c.malformed,
            c.caught_up,
        )

    def expected(self, event: RequestEvent) -> list[str]:
        """The candidates whose results this request waits for (as the shadow role plans)."""
        stage = self._stage_of(event.route) if self._stage_of else None
        chosen, _ = replay_candidates(event, self._candidates.get(event.route, []), stage)
        return [c.model for c in chosen]

    def _faust_app(self) -> faust.App:
        topics, cfg = self.settings.topics, self.cfg
        datadir = self.settings.data_dir / "faust"
        datadir.mkdir(parents=True, exist_ok=True)
        batch = cfg.producer_max_batch_size or (1 if self._embedded else None)
        options: dict[str, Any] = {
            "broker": [f"kafka://{s}" for s in self._servers.split(",")],
            "broker_credentials": _credentials(self.settings),
            "broker_session_timeout": 6.0,
            "broker_heartbeat_interval": 0.5,
            "processing_guarantee": "at_least_once",
            "topic_partitions": topics.partitions,
            # faust creates its own topics with an explicit factor (its admin requests predate
            # the broker default): set topics.replication_factor on a cluster
            "topic_replication_factor": topics.replication_factor or 1,
            "store": "memory://",
            "web_enabled": False,
            "datadir": str(datadir),
            "consumer_auto_offset_reset": "earliest",
            "stream_wait_empty": False,
        }
        if batch:
            options["producer_max_batch_size"] = batch
        app = faust.App(cfg.group_id, **options)
        source = KeptTopic(
            app,
            topics=[topics.requests, topics.shadow],
            key_serializer="raw",
            value_serializer="raw",
        )
        output = app.topic(topics.comparisons, key_serializer="raw", value_serializer="raw")
        table = app.Table(pairs_table(topics.requests), key_type=str, use_partitioner=True)

        async def emit(comparisons: list[Comparison]) -> None:
            for comparison in comparisons:
                await self.send(output, comparison)
                self.counters.comparisons[comparison.status] += 1

        async def apply(key: str, step: Step) -> None:
            await emit(step.comparisons)  # before the table write: a crash re-emits, never loses
            if step.entry is None:
                table.pop(key, None)
            elif step.entry is not table.get(key):
                table[key] = step.entry

        async def join(stream: Any) -> None:
            async for event in self.events(stream):
                message = current = event.message
                try:
                    missed = await self._skipped_before(message, app)
                    if missed is None:  # a rebalance began meanwhile: faust delivers it again
                        continue
                    for current in [*missed, message]:
                        await self._handle(current, table, apply, app)
                        self._guard.processed((current.topic, current.partition), current.offset)
                    for raw in missed:  # so that faust's commits go past them
                        app.consumer.ack(as_faust_message(raw, message.generation_id))
                except Exception as exc:
                    self.failed = FailedEvent(current.topic, current.partition, current.offset, exc)
                    log.exception("join failed on %s[%s]@%s", *_where(current))
                    self._stop.set()
                    raise
                await stream.ack(event)

        app.agent(source, name="join", supervisor_strategy=CrashingSupervisor)(join)

        async def tick() -> None:
            now = time.time()
            for key, entry in list(table.items()):
                step = on_tick(
                    entry, now, cfg.window_s, cfg.orphan_window_s, cfg.retention_s, self._since
                )
                await apply(key, step)
                if step.outcome == "orphan":
                    self.counters.outcomes["orphan"] += 1
            self.counters.open_entries = len(table)
            self.counters.ticks += 1

        app.timer(cfg.tick_s)(tick)
        return app

    def events(self, stream: Any) -> AsyncIterator[Any]:
        """The events faust hands the join, with acks off: each is acked once processed."""
        events: AsyncIterator[Any] = stream.noack().events()
        return events

    async def _skipped_before(self, message: Any, app: faust.App) -> list[RawEvent] | None:
        """The events of ``message``'s partition that faust skipped, read from Kafka.

        ``None`` when a rebalance began while they were read: neither they nor ``message``
        are handled or acked, and whoever owns the partition next reads them again.
        """
        if self._guard.needs_start(message.generation_id):
            loop = asyncio.get_running_loop()
            conf = self.settings.kafka.librdkafka(self._servers)
            topics = self.settings.topics
            sources = (topics.requests, topics.shadow)
            tps = [(t, p) for t in sources for p in range(topics.partitions)]
            committed = await loop.run_in_executor(
                None, committed_offsets, conf, self.cfg.group_id, tps
            )
            self._guard.start(message.generation_id, committed)
        tp = (message.topic, message.partition)
        hole = self._guard.skipped(tp, message.offset)
        if not hole:
            return [] if message.generation_id == app.consumer_generation_id else None
        conf = self.settings.kafka.librdkafka(self._servers)
        events = await asyncio.get_running_loop().run_in_executor(None, read_range, conf, tp, hole)
        log.warning(
            "join: faust skipped %s[%s] offsets %d..%d; read %d of them directly",
            *tp,
            hole.start,
            hole.stop - 1,
            len(events),
        )
        if message.generation_id != app.consumer_generation_id:
            return None
        self.counters.caught_up += len(events)
        return events

    async def _handle(
        self,
        message: Any,
        table: Any,
        apply: Callable[[str, Step], Any],
        app: faust.App,
    ) -> None:
        if not self.counters.consumed:  # windows count from here: recovery and join are done
            self._since = time.time()
        self.counters.consumed += 1
        topics = self.settings.topics
        raw: bytes = message.value or b""
        now = time.time()
        try:
            event: RequestEvent | ShadowResult
            if message.topic == topics.requests:
                event = RequestEvent.from_json(raw)
            else:
                event = ShadowResult.from_json(raw)
            self._band.admit(event.event_time, dt.datetime.now(dt.UTC))
            key = event.request_id
            self._check_placement(message, key)
            if isinstance(event, RequestEvent):
                step = on_request(table.get(key), event, self.expected(event), now)
            else:
                step = on_shadow(table.get(key), event, now)
        except (EventValidationError, EventTimeOutOfBandError) as exc:
            self.counters.malformed += 1
            letter = dead_letter(
                role="join",
                error=exc,
                source=_where(message),
                key=message.key,
                value=raw,
                dlq_suffix=topics.dlq_suffix,
            )
            await app.topic(letter.topic, value_serializer="raw").send(
                key=letter.key, value=letter.value, headers=list(letter.headers)
            )
            return
        await apply(key, step)
        self.counters.outcomes[step.outcome] += 1

    def _check_placement(self, message: Any, key: str) -> None:
        """Count (and log, once a minute) an event not where murmur2 places its request_id."""
        expected = murmur2_partition(key.encode(), self.settings.topics.partitions)
        if message.partition == expected:
            return
        self.counters.misplaced += 1
        now = time.monotonic()
        if now - self._misplaced_logged >= 60:
            self._misplaced_logged = now
            log.warning(
                "join: %s[%s] holds request_id %r, which murmur2 places on partition %d: its "
                "producer used another partitioner, so a request and its shadow results may "
                "reach different join workers and never pair (%d such events so far; produce "
                "with the Java client's murmur2 on the request_id key, see README, Join)",
                message.topic, message.partition, key, expected, self.counters.misplaced,
            )  # fmt: skip

    async def send(self, topic: Any, comparison: Comparison) -> None:
        """Hand one comparison to the producer (keyed by request_id, like its inputs).

        Buffered (faust flushes its producer before committing offsets, and a send that
        fails crashes the app before the commit).
        """
        topic.send_soon(key=comparison.request_id.encode(), value=comparison.to_json())


def pairs_table(requests_topic: str) -> str:
    """The name of the join's table (its changelog is ``<group_id>-<name>-changelog``).

    It names the requests topic it pairs: the table's entries only mean something with the
    consumer offsets of those topics, so two deployments on one cluster that share a
    ``group_id`` but not their topics never recover each other's entries (their ``missing``
    comparisons would be false ones).
    """
    return f"pairs-{requests_topic}"


def _where(message: Any) -> tuple[str, int, int]:
    return message.topic, message.partition, message.offset


def _credentials(settings: Settings) -> Any:
    """Faust credentials for the configured security protocol (``None`` for PLAINTEXT)."""
    kafka = settings.kafka
    if kafka.security_protocol == "PLAINTEXT":
        return None
    import ssl  # noqa: PLC0415 - only with TLS

    context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
    if kafka.ssl_certificate_location:
        context.load_cert_chain(
            kafka.ssl_certificate_location,
            kafka.ssl_key_location,
            kafka.ssl_key_password.get_secret_value() if kafka.ssl_key_password else None,
        )
    if kafka.sasl_mechanism is None:
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(
        username=kafka.sasl_username,
        password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        mechanism=kafka.sasl_mechanism,
        ssl_context=context if kafka.security_protocol == "SASL_SSL" else None,
    )


__all__ = ["FailedEvent", "JoinCounters", "JoinRole", "pairs_table"]
