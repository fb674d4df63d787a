"""The join role on real parts: Tansu, faust (aiokafka), confluent-kafka producers."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from processors.catchup import committed_offsets
from processors.join import JoinRole
from schemas import Comparison, RequestEvent, ShadowResult
from shadowlab.core.errors import JoinFailedError
from shadowlab.core.kafka import ensure_topics, murmur2_partition, producer_config
from shadowlab.core.settings import Settings
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing import (
    make_settings,
    models_at,
    produce,
    read_events,
    read_messages,
    route_config,
    run_until,
    running,
    sample_request,
    sample_shadow,
    wait_until,
)


def _settings(topic_factory: Callable[..., str], tmp_path: Path, **join: Any) -> Settings:
    return make_settings(
        tmp_path,
        models=models_at("http://sim", "gpt-4", "gpt-4o", "ft-1"),
        routes=[route_config("gpt-4", "gpt-4o")],
        topics={
            "requests": topic_factory("req", 4),
            "shadow": topic_factory("shadow", 4),
            "comparisons": topic_factory("cmp", 4),
        },
        join={"group_id": f"join-{uuid.uuid4().hex[:8]}", "window_s": 2.0, **join},
    )


def _pairs(n: int, prefix: str) -> tuple[list[RequestEvent], list[ShadowResult]]:
    requests = [sample_request(request_id=f"{prefix}-{i}") for i in range(n)]
    results = [
        sample_shadow(request_id=r.request_id, event_time=r.event_time, answer=f"answer {i}")
        for i, r in enumerate(requests)
    ]
    return requests, results


def _forty_produced_pairs(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path, prefix: str
) -> tuple[Settings, list[RequestEvent]]:
    """Settings with new topics, where 40 requests and their 40 results are produced.

    Every result exists: a long window keeps a slow (loaded) machine from declaring a pair
    missing while a (re)started role is still catching up.
    """
    settings = _settings(topic_factory, tmp_path, window_s=60.0)
    requests, results = _pairs(40, prefix)
    produce(kafka, settings.topics.requests, requests, "request_id")
    produce(kafka, settings.topics.shadow, results, "request_id")
    return settings, requests


def _role(settings: Settings, broker: EmbeddedBroker, cls: type[JoinRole] = JoinRole) -> JoinRole:
    return cls(settings, broker.bootstrap_servers, embedded=isinstance(broker, EmbeddedBroker))


def test_out_of_order_results_join_and_absent_ones_are_missing(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings = _settings(topic_factory, tmp_path)
    topics = settings.topics
    requests, results = _pairs(60, "ooo")
    produce(kafka, topics.shadow, results[:30], "request_id")  # these arrive first
    produce(kafka, topics.requests, requests, "request_id")
    produce(kafka, topics.shadow, results[30:50], "request_id")  # the last 10 never arrive
    role = _role(settings, broker)
    run_until(role, lambda: sum(role.counters.comparisons.values()) >= 60, timeout_s=60)

    comparisons = read_events(kafka, topics.comparisons, Comparison, count=60)
    by_id = {c.request_id: c for c in comparisons}
    assert len(comparisons) == len(by_id) == 60
    assert {r.request_id for r in requests} == set(by_id)
    assert Counter(c.status for c in comparisons) == {"joined": 50, "missing": 10}
    assert all(by_id[r.request_id].status == "missing" for r in requests[50:])
    joined = by_id["ooo-3"]
    assert (joined.primary_model, joined.candidate_model) == ("gpt-4", "gpt-4o")
    assert joined.event_time == requests[3].event_time
    assert joined.similarity is not None
    # Results produced first are usually consumed first and held; the agent reads both
    # topics at once, so a few may still be consumed after their request.
    assert role.counters.outcomes["held"] >= 20


def test_malformed_events_go_to_the_dead_letter_topic(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings = _settings(topic_factory, tmp_path)
    topics = settings.topics
    dlq = topics.requests + topics.dlq_suffix
    ensure_topics(kafka, {dlq: 1})
    producer = Producer(kafka)
    producer.produce(topics.requests, key=b"bad-1", value=b'{"request_id": 5}')
    producer.flush(10)
    requests, results = _pairs(5, "dlq")
    produce(kafka, topics.requests, requests, "request_id")
    produce(kafka, topics.shadow, results, "request_id")
    role = _role(settings, broker)
    run_until(role, lambda: role.counters.comparisons["joined"] >= 5, timeout_s=60)

    (poison,) = read_messages(kafka, dlq, 1)
    assert poison.value() == b'{"request_id": 5}'
    headers = dict(poison.headers() or [])
    assert b"request_id" in headers["error"]
    assert headers["role"] == b"join"
    assert role.counters.malformed == 1


class _FailingJoin(JoinRole):
    """Fails to hand its 8th comparison to the producer (a broken output path)."""

    sent = 0

    async def send(self, topic: Any, comparison: Comparison) -> None:
        self.sent += 1
        if self.sent == 8:
            raise RuntimeError("output topic unavailable")
        await super().send(topic, comparison)


def test_a_failure_acks_nothing_that_was_not_processed(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings, requests = _forty_produced_pairs(kafka, topic_factory, tmp_path, "fail")
    topics = settings.topics

    failing = _role(settings, broker, _FailingJoin)
    with pytest.raises(JoinFailedError, match="output topic unavailable"):
        run_until(failing, lambda: False, timeout_s=60)
    failed = failing.failed
    assert failed is not None

    committed = _committed(kafka, settings)
    # (faust commits every commit interval, so what was processed before the failure may or
    # may not be committed yet; the restart below must join every pair either way)
    assert committed[failed.topic, failed.partition] <= failed.offset  # the failed event is not

    # the failed worker left its group before the restart joins it (Apache Kafka lists the
    # members; a restart joining while a rebalance waits for the old member can stall)
    wait_until(lambda: not _group_members(kafka, settings.join.group_id), 60,
               what="the failed join worker to leave its consumer group")  # fmt: skip
    role = _role(settings, broker)  # the restarted role processes it and what came after
    expected = {r.request_id for r in requests}
    # duplicates are allowed (at-least-once); gaps are not: run until every pair is joined
    run_until(role, lambda: _joined_ids(kafka, topics.comparisons) == expected, timeout_s=90)
    assert role.counters.comparisons["joined"] >= 1


def _group_members(kafka: dict[str, str], group: str) -> int:
    admin = AdminClient(dict(kafka))
    try:
        description = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:
        return 0
    return len(description.members)


def _committed(kafka: dict[str, str], settings: Settings) -> dict[tuple[str, int], int]:
    """The join group's next offsets on its two source topics (4 partitions each)."""
    topics = settings.topics
    tps = [(t, p) for t in (topics.requests, topics.shadow) for p in range(4)]
    return committed_offsets(kafka, settings.join.group_id, tps)


def _joined_ids(kafka: dict[str, str], topic: str) -> set[str]:
    """The request ids of the joined comparisons on ``topic`` so far (reads to the end)."""
    consumer = Consumer({**kafka, "group.id": f"read-{uuid.uuid4().hex}"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(4)])
    ids: set[str] = set()
    try:
        while messages := consumer.consume(1000, 0.5):
            for message in messages:
                comparison = Comparison.from_json(message.value() or b"")
                if comparison.status == "joined":
                    ids.add(comparison.request_id)
    finally:
        consumer.close()
    return ids


def test_held_results_survive_a_restart(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings = _settings(topic_factory, tmp_path, orphan_window_s=600)
    topics = settings.topics
    requests, results = _pairs(30, "restart")
    produce(kafka, topics.shadow, results, "request_id")
    first = _role(settings, broker)
    run_until(first, lambda: first.counters.outcomes["held"] >= 30, timeout_s=60)

    produce(kafka, topics.requests, requests, "request_id")
    second = _role(settings, broker)  # rebuilds the held results from the table's changelog
    run_until(second, lambda: second.counters.comparisons["joined"] >= 30, timeout_s=60)
    comparisons = read_events(kafka, topics.comparisons, Comparison, count=30)
    assert {c.request_id for c in comparisons} == {r.request_id for r in requests}
    assert {c.status for c in comparisons} == {"joined"}


class _SkippingJoin(JoinRole):
    """Loses some events the way faust's pure-Python stream does: acked, never handled.

    (faust-streaming drops events around a rebalance; see :mod:`processors.catchup`.) Skips,
    once, the requests at ``lose_requests`` and the results at ``lose_results`` of every
    partition.
    """

    lose_requests = frozenset({0, 2})
    lose_results = frozenset({1})
    ack_lost = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skipped: set[tuple[str, int, int]] = set()

    def events(self, stream: Any) -> Any:
        events = super().events(stream)
        requests = self.settings.topics.requests

        async def skipping() -> Any:
            async for event in events:
                m = event.message
                where = (m.topic, m.partition, m.offset)
                lose = self.lose_requests if m.topic == requests else self.lose_results
                if m.offset in lose and where not in self.skipped:
                    self.skipped.add(where)
                    if self.ack_lost:
                        await stream.ack(event)  # and the commit moves past it
                    elif m.offset == min(lose):
                        await stream.app.consumer.commit()  # what came before is committed
                    continue
                yield event

        return skipping()


class _SkippingQuietlyJoin(_SkippingJoin):
    """Loses two events in a row after a commit, unacked: faust's compiled stream."""

    lose_requests = frozenset({2, 3})
    lose_results = frozenset({1, 2})
    ack_lost = False


def _log_ends(kafka: dict[str, str], topics: list[str], count: int) -> dict[tuple[str, int], int]:
    """The offset after the last event of every partition of ``topics`` (``count`` each)."""
    ends: dict[tuple[str, int], int] = {}
    for topic in topics:
        for message in read_messages(kafka, topic, count):
            tp = (topic, message.partition() or 0)
            ends[tp] = max(ends.get(tp, 0), (message.offset() or 0) + 1)
    return ends


@pytest.mark.parametrize("cls", [_SkippingJoin, _SkippingQuietlyJoin])
def test_events_faust_skipped_are_read_directly_joined_and_committed(
    cls: type[_SkippingJoin],
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings, requests = _forty_produced_pairs(kafka, topic_factory, tmp_path, "skip")
    topics = settings.topics  # (9, 9, 9 and 13 pairs per partition)

    role = _role(settings, broker, cls)
    assert isinstance(role, _SkippingJoin)
    expected = {r.request_id for r in requests}
    run_until(role, lambda: _joined_ids(kafka, topics.comparisons) == expected, timeout_s=60)
    assert len(role.skipped) == 4 * (len(cls.lose_requests) + len(cls.lose_results))
    assert role.counters.caught_up == len(role.skipped)
    statuses = Counter(
        c.status for c in read_events(kafka, topics.comparisons, Comparison, count=40)
    )
    assert statuses == {"joined": 40}
    # the stopped role committed everything: the events read directly were acked to faust
    ends = _log_ends(kafka, [topics.requests, topics.shadow], 40)
    assert _committed(kafka, settings) == ends


def test_huge_answers_are_joined_without_overflowing_the_table(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings = _settings(topic_factory, tmp_path, window_s=60.0)
    # 900 kB of UTF-8 on the topic; JSON-escaped in a table entry (\u00e9) it would be 2.7 MB
    huge = "garantía " + "é" * 450_000
    request = sample_request(request_id="huge-1", answer=huge)
    result = sample_shadow(request_id="huge-1", event_time=request.event_time, answer=huge + " ")
    produce(kafka, settings.topics.shadow, [result], "request_id")  # held first: both in a table
    produce(kafka, settings.topics.requests, [request], "request_id")
    role = _role(settings, broker)
    run_until(role, lambda: role.counters.comparisons["joined"] == 1, timeout_s=120)
    (comparison,) = read_events(kafka, settings.topics.comparisons, Comparison, count=1)
    assert comparison.status == "joined"
    assert comparison.exact_match is True  # the whole answers, stripped, are equal
    assert comparison.length_ratio == pytest.approx((len(huge) + 1) / len(huge))
    assert comparison.similarity == 1.0


def test_deployments_sharing_a_group_id_never_recover_each_others_entries(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    first = _settings(topic_factory, tmp_path / "a", window_s=60.0)
    produce(kafka, first.topics.requests, _pairs(20, "first")[0], "request_id")  # none answered
    role = _role(first, broker)
    run_until(role, lambda: role.counters.outcomes["waiting"] == 20)

    shared = {"group_id": first.join.group_id, "window_s": 0.5, "tick_s": 0.1}
    second = _settings(topic_factory, tmp_path / "b", **shared)
    requests, results = _pairs(1, "second")
    produce(kafka, second.topics.requests, requests, "request_id")
    produce(kafka, second.topics.shadow, results, "request_id")
    other = _role(second, broker)
    with running(other):
        wait_until(lambda: other.counters.comparisons["joined"] == 1, what=lambda: other.counters)
        joined_at = other.counters.ticks
        wait_until(lambda: other.counters.ticks > joined_at + 10)  # windows of 0.5 s are over
    assert other.counters.comparisons == {"joined": 1}  # no false missing for the first's 20
    assert other.counters.open_entries <= 1


def test_a_request_off_its_murmur2_partition_is_counted_and_said(
    broker: EmbeddedBroker,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(topic_factory, tmp_path, window_s=60.0)
    topics = settings.topics
    requests, results = _pairs(30, "placed")
    produce(kafka, topics.requests, requests, "request_id")
    produce(kafka, topics.shadow, results, "request_id")
    # librdkafka's murmur2_random is where murmur2_partition says, for every key
    placed = read_messages(kafka, topics.requests, count=30)
    assert all(m.partition() == murmur2_partition(m.key(), 4) for m in placed)
    assert len({m.partition() for m in placed}) > 1
    # a producer with another partitioner (kcat's default, say) puts one elsewhere
    stray = sample_request(request_id="stray-1")
    wrong = (murmur2_partition(b"stray-1", 4) + 1) % 4
    producer = Producer(producer_config(kafka))
    producer.produce(topics.requests, key=b"stray-1", value=stray.to_json(), partition=wrong)
    producer.flush(10)
    role = _role(settings, broker)
    with caplog.at_level("WARNING", logger="processors.join"):
        run_until(role, lambda: role.counters.consumed >= 61, timeout_s=60)
    assert role.counters.misplaced == 1
    assert "murmur2 places on partition" in caplog.text
    assert "stray-1" in caplog.text
