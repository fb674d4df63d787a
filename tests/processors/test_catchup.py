"""The join's guard against events faust skipped: pure bookkeeping, then reads on Tansu."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import faust
import pytest
from confluent_kafka import Consumer, TopicPartition

from processors.catchup import KeptTopic, OffsetGuard, committed_offsets, read_range
from shadowlab.core.errors import JoinFailedError
from shadowlab.testing import produce, sample_request

TP = ("llm.requests", 2)


def test_a_new_generation_starts_at_the_committed_offsets() -> None:
    guard = OffsetGuard()
    assert guard.needs_start(1)
    guard.start(1, {TP: 5})
    assert not guard.needs_start(1)
    assert guard.skipped(TP, 5) == range(0)  # the next offset to read: nothing skipped
    assert guard.skipped(TP, 8) == range(5, 8)  # 5, 6 and 7 never reached the join
    assert guard.needs_start(2)  # a rebalance: positions are taken again


def test_processed_offsets_move_the_position_forward_only() -> None:
    guard = OffsetGuard()
    guard.start(1, {TP: 0})
    guard.processed(TP, 0)
    guard.processed(TP, 1)
    assert guard.skipped(TP, 2) == range(0)
    assert guard.skipped(TP, 4) == range(2, 4)
    guard.processed(TP, 6)
    guard.processed(TP, 3)  # a redelivered, older event does not move it back
    assert guard.skipped(TP, 7) == range(0)
    assert guard.skipped(TP, 2) == range(0)  # an event already seen is never a hole


def test_a_partition_kept_into_the_next_generation_stays_where_the_join_stopped() -> None:
    other = ("llm.shadow", 0)
    guard = OffsetGuard()
    guard.start(1, {TP: 0, other: 0})
    guard.processed(TP, 0)
    guard.processed(TP, 1)
    # the commit moved to 5 past events the join never handled (faust acked what it skipped)
    guard.start(2, {TP: 5, other: 3})
    assert guard.skipped(TP, 5) == range(2, 5)
    assert guard.skipped(other, 3) == range(0)  # not handled in 1: perhaps another worker's
    guard.start(4, {TP: 9, other: 3})  # generation 3 went by unseen: committed offsets only
    assert guard.skipped(TP, 9) == range(0)


def test_a_partition_without_a_known_position_reports_no_hole() -> None:
    guard = OffsetGuard()
    guard.start(1, {})
    assert guard.skipped(("other", 0), 40) == range(0)
    guard.processed(("other", 0), 40)
    assert guard.skipped(("other", 0), 43) == range(41, 43)


def test_committed_offsets_are_the_log_start_until_the_group_commits(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("catchup", 2)
    produce(kafka, topic, [sample_request(request_id=f"c-{i}") for i in range(6)], "request_id")
    group = f"catchup-{uuid.uuid4().hex[:8]}"
    tps = [(topic, 0), (topic, 1)]
    assert committed_offsets(kafka, group, tps) == {(topic, 0): 0, (topic, 1): 0}

    consumer = Consumer({**kafka, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 1, 2)], asynchronous=False)
    consumer.close()
    assert committed_offsets(kafka, group, tps) == {(topic, 0): 0, (topic, 1): 2}


def test_read_range_returns_exactly_the_asked_offsets(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("catchup", 1)
    requests = [sample_request(request_id=f"r-{i}") for i in range(8)]
    produce(kafka, topic, requests, "request_id")
    events = read_range(kafka, (topic, 0), range(2, 5))
    assert [e.offset for e in events] == [2, 3, 4]
    assert [e.key for e in events] == [b"r-2", b"r-3", b"r-4"]
    assert events[0].value == requests[2].to_json()
    assert {(e.topic, e.partition) for e in events} == {(topic, 0)}


def test_read_range_past_the_end_of_the_log_fails_clearly(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("catchup", 1)
    produce(kafka, topic, [sample_request(request_id="only")], "request_id")
    with pytest.raises(JoinFailedError, match=r"offsets 0\.\.4 within 3 s \(stopped at 1\)"):
        read_range(kafka, (topic, 0), range(5), timeout_s=3.0)


@pytest.mark.parametrize(("kept", "left"), [(True, 1), (False, 0)])
def test_a_kept_topic_keeps_its_queued_events_when_the_flow_resumes(kept: bool, left: int) -> None:
    app = faust.App(f"kept-{uuid.uuid4().hex[:8]}", broker="kafka://127.0.0.1:9")
    topic = KeptTopic(app, topics=["llm.requests"]) if kept else app.topic("llm.requests")

    async def agent(stream: Any) -> None:
        async for _event in stream:
            pass

    stream_queue = app.agent(topic)(agent).stream().channel.queue  # what the agent reads
    stream_queue.put_nowait("an event fetched during the rebalance")
    app.flow_control.suspend()
    app.flow_control.resume()  # what faust does at the end of a rebalance
    assert stream_queue.qsize() == left  # faust's own topic clears it: the event is lost
