"""Tiny helpers for tests and checks: sample events, produce them, read a topic back.

A processor test is then a few lines::

    produce(stack.kafka_config(), "llm.requests", [sample_request()])
    events = read_events(stack.kafka_config(), "llm.requests", RequestEvent, count=1)
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from processors.clients import model_client
from processors.shadow import replay
from producers.emitter import EventProducer
from schemas import Event, RequestEvent, ShadowResult
from shadowlab.core.kafka import CONSUMER_DEFAULTS, producer_config
from shadowlab.core.role import Role
from shadowlab.core.settings import Settings

E = TypeVar("E", bound=Event)
R = TypeVar("R", bound=Role)


def sample_request(**overrides: Any) -> RequestEvent:
    """Return a valid RequestEvent (a RAG question with one context document)."""
    data: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "event_time": dt.datetime.now(dt.UTC),
        "route": "support-answer",
        "user_key": "user-42",
        "session_id": "sess-7",
        "tenant": "acme",
        "request": {
            "messages": [
                {"role": "system", "content": "Answer from the context only."},
                {"role": "user", "content": "How long is the warranty?"},
            ],
            "temperature": 0.2,
            "max_tokens": 256,
            "seed": 7,
        },
        "context_documents": [{"id": "doc-1", "text": "The warranty lasts two years."}],
        "model": "gpt-4",
        "arm": "primary",
        "flags_version": 3,
        "answer": "The warranty lasts two years.",
        "latency_ms": 812.5,
        "ttft_ms": 240.0,
        "prompt_tokens": 57,
        "completion_tokens": 9,
        "cost_usd": 0.00225,
        "status": "ok",
        "metadata": {"app": "helpdesk"},
    }
    data.update(overrides)
    return RequestEvent.parse(data)


def sample_shadow(**overrides: Any) -> ShadowResult:
    """Return a valid ShadowResult of ``gpt-4o`` for :func:`sample_request`'s route."""
    now = dt.datetime.now(dt.UTC)
    data: dict[str, Any] = {
        "request_id": f"req-{uuid.uuid4().hex}",
        "event_time": now,
        "replayed_at": now,
        "route": "support-answer",
        "candidate": "gpt-4o",
        "primary_model": "gpt-4",
        "answer": "The warranty lasts two years.",
        "latency_ms": 900.0,
        "ttft_ms": 300.0,
        "prompt_tokens": 57,
        "completion_tokens": 11,
        "cost_usd": 0.001,
        "status": "ok",
    }
    data.update(overrides)
    return ShadowResult.parse(data)


class _Run:
    """A role started by :func:`running`: its thread and what its ``run()`` raised."""

    def __init__(self, role: Role) -> None:
        self.role = role
        self.failure: BaseException | None = None
        self.thread = threading.Thread(
            target=self._target, name=f"{type(role).__name__}-under-test", daemon=True
        )

    def _target(self) -> None:
        try:
            self.role.run()
        except BaseException as exc:  # handed to the test's thread
            self.failure = exc


_RUNS: list[_Run] = []
_RUNS_LOCK = threading.Lock()


def _raise_failures() -> None:
    """Raise what a role started by :func:`running` (and not yet stopped) raised, if any."""
    with _RUNS_LOCK:
        failed = next((run.failure for run in _RUNS if run.failure is not None), None)
    if failed is not None:
        raise failed


@contextmanager
def running(role: R, *, join_timeout_s: float = 30.0) -> Iterator[R]:
    """Run ``role.run()`` in a thread for the ``with`` block; then stop it and join it.

    While the block runs, :func:`wait_until` (and :func:`run_until`) raise what the role
    raised as soon as it raised; on exit the role is stopped (its last batch finishes) and
    its exception, if any, is raised (over one the block raised, which is its context).

    Raises:
        Exception: whatever ``role.run`` raised.
        TimeoutError: the role did not return within ``join_timeout_s`` of ``stop()``.
    """
    run = _Run(role)
    with _RUNS_LOCK:
        _RUNS.append(run)
    run.thread.start()
    try:
        yield role
    except BaseException as exc:
        _finish(run, join_timeout_s)
        if run.failure is not None and run.failure is not exc:
            # the role's failure is the cause: the block's exception stays its context
            raise run.failure  # noqa: B904
        raise
    _finish(run, join_timeout_s)
    if run.failure is not None:
        raise run.failure
    if run.thread.is_alive():
        raise TimeoutError(
            f"{type(role).__name__} did not stop within {join_timeout_s:g} s: {role.counters}"
        )


def _finish(run: _Run, join_timeout_s: float) -> None:
    try:
        run.role.stop()
        run.thread.join(join_timeout_s)
    finally:
        with _RUNS_LOCK:
            _RUNS.remove(run)


def is_running(role: Role) -> bool:
    """Whether ``role``, started by :func:`running`, is still in its ``run()``."""
    with _RUNS_LOCK:
        return any(run.role is role and run.thread.is_alive() for run in _RUNS)


def wait_until(
    done: Callable[[], bool],
    timeout_s: float = 60.0,
    *,
    what: Callable[[], object] | str = "",
    poll_s: float = 0.05,
) -> None:
    """Wait until ``done()`` is true: a condition, never a fixed sleep.

    Choose ``timeout_s`` generously: it only bounds how long a broken run takes to fail, so a
    slow, loaded machine makes the wait longer, not the test fail.

    Raises:
        Exception: what a role started by :func:`running` raised, as soon as it raised.
        TimeoutError: ``done()`` stayed false (the message shows ``what``).
    """
    deadline = time.monotonic() + timeout_s
    while not done():
        _raise_failures()
        if time.monotonic() > deadline:
            shown = what() if callable(what) else what
            raise TimeoutError(f"timed out after {timeout_s:g} s" + (f": {shown}" if shown else ""))
        time.sleep(poll_s)
    _raise_failures()


def run_until(role: Role, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Run ``role`` in a thread until ``done()``; then stop it and wait for its last batch.

    Raises:
        TimeoutError: ``done()`` stayed false (the message shows the role's counters).
        Exception: whatever ``role.run`` raised, as soon as it raised.
    """
    with running(role):
        wait_until(done, timeout_s, what=lambda: role.counters)


def wait_for_http(url: str, timeout_s: float = 20.0) -> None:
    """Wait until ``url`` answers an HTTP GET (a server started in another process).

    Raises:
        TimeoutError: it did not answer in time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).close()  # noqa: S310 - local test servers
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout_s:g} s") from None
            time.sleep(0.05)


def produce(
    connection: Mapping[str, str], topic: str, events: Iterable[Event], key_field: str = ""
) -> int:
    """Produce events as JSON (keyed by ``key_field`` when given), flush, return the count.

    Raises:
        KafkaException: when a delivery failed.
    """
    producer = Producer(producer_config(connection, **{"linger.ms": "0"}))
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Message) -> None:
        if err is not None:
            failures.append(str(err))

    count = 0
    for event in events:
        key = str(getattr(event, key_field)) if key_field else None
        producer.produce(topic, value=event.to_json(), key=key, on_delivery=on_delivery)
        producer.poll(0)
        count += 1
    producer.flush(30)
    if failures:
        raise KafkaException(f"{len(failures)} deliveries failed, first: {failures[0]}")
    return count


def read_messages(
    connection: Mapping[str, str],
    topic: str,
    count: int,
    *,
    timeout_s: float = 30.0,
    key: str | None = None,
) -> list[Message]:
    """Read ``count`` messages of ``topic`` from the start of every partition (no group).

    With ``key``, only messages with that key are kept (and counted).

    Raises:
        TimeoutError: fewer than ``count`` messages arrived in time.
    """
    conf = {**connection, **CONSUMER_DEFAULTS, "group.id": f"read-{uuid.uuid4().hex}"}
    consumer = Consumer(conf)
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = metadata.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        messages: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(messages) < count and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=1000, timeout=0.2):
                if message.error() is not None:
                    raise KafkaException(message.error())
                if key is None or message.key() == key.encode():
                    messages.append(message)
        if len(messages) < count:
            raise TimeoutError(f"read {len(messages)} of {count} messages from {topic}")
        return messages
    finally:
        consumer.close()


def read_events(
    connection: Mapping[str, str],
    topic: str,
    event_type: type[E],
    *,
    count: int,
    timeout_s: float = 30.0,
    key: str | None = None,
) -> list[E]:
    """Read and decode ``count`` events of ``event_type`` from ``topic`` (see read_messages)."""
    return [
        event_type.from_json(m.value() or b"")
        for m in read_messages(connection, topic, count, timeout_s=timeout_s, key=key)
    ]


def emitted_requests(
    connection: Mapping[str, str], events: EventProducer, count: int
) -> list[RequestEvent]:
    """Flush ``events`` (failing if it cannot) and read ``count`` RequestEvents it sent."""
    if not events.flush(30):
        raise AssertionError("the EventProducer did not deliver within 30 s")
    return read_events(connection, events.requests_topic, RequestEvent, count=count)


def replay_once(settings: Settings, candidate: str, event: RequestEvent) -> ShadowResult | None:
    """Replay ``event`` to ``candidate`` as the shadow role would, once, outside the role.

    The role's retries and deadline apply (``settings.shadow``); ``None`` is a final 429
    counted as rate limited.
    """
    endpoint = settings.model(candidate)

    async def call() -> ShadowResult | None:
        async with model_client(endpoint, max_retries=0) as client:
            return await replay(client, endpoint, event, settings.shadow)

    return asyncio.run(call())


def end_offsets(
    connection: Mapping[str, str], partitions: Iterable[tuple[str, int]], *, timeout_s: float = 30.0
) -> dict[tuple[str, int], int]:
    """The log end offset of each (topic, partition), from Fetch responses (no group).

    Not ``get_watermark_offsets`` (a ListOffsets request): the embedded broker answers that
    wrongly (the base offset of the last batch + 1), while the high watermark of a Fetch
    response is right on both brokers. A fetch from the start of each partition returns it.

    Raises:
        TimeoutError: a partition answered no fetch in time.
    """
    wanted = list(partitions)
    conf = {**connection, **CONSUMER_DEFAULTS, "group.id": f"ends-{uuid.uuid4().hex}"}
    consumer = Consumer(conf)
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in wanted])
        ends: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + timeout_s
        while len(ends) < len(wanted):
            consumer.consume(num_messages=1, timeout=0.1)
            for tp in wanted:
                _low, high = consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
                if high >= 0:
                    ends[tp] = high
            if len(ends) < len(wanted) and time.monotonic() > deadline:
                absent = sorted(set(wanted) - set(ends))
                raise TimeoutError(f"no fetch answered in {timeout_s:g} s for {absent}")
        return ends
    finally:
        consumer.close()


def group_lag(
    connection: Mapping[str, str], group: str, partitions: Iterable[tuple[str, int]]
) -> int:
    """Messages of ``partitions`` that consumer group ``group`` has not committed yet.

    Exact on both brokers (the end offsets come from :func:`end_offsets`): 0 means the group
    has committed everything written so far.
    """
    wanted = list(partitions)
    ends = end_offsets(connection, wanted)
    consumer = Consumer({**connection, **CONSUMER_DEFAULTS, "group.id": group})
    try:
        committed = consumer.committed([TopicPartition(t, p) for t, p in wanted], 10)
    finally:
        consumer.close()
    return sum(ends[(tp.topic, tp.partition)] - max(tp.offset, 0) for tp in committed)
