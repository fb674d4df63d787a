"""The EventProducer on a real broker: delivers, never blocks, spills and replays, survives
a broker restart and a crash of the service process."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from producers import EventProducer
from schemas import FeedbackEvent, RequestEvent
from shadowlab.broker import EmbeddedBroker, free_port
from shadowlab.kafka import ensure_topics
from shadowlab.testing import read_events, read_messages, sample_request
from tests.samples import sample_events

REPO = Path(__file__).resolve().parents[2]


def _emit_timed(
    producer: EventProducer, events: Sequence[RequestEvent], out: list[float], rate: int
) -> None:
    """Emit at about ``rate`` events per second (a busy service), timing every call."""
    started_all = time.perf_counter()
    for i, event in enumerate(events):
        started = time.perf_counter()
        producer.emit_request(event)
        out.append(time.perf_counter() - started)
        if i % 100 == 99:
            ahead = (i + 1) / rate - (time.perf_counter() - started_all)
            if ahead > 0:
                time.sleep(ahead)


def test_events_arrive_keyed_by_request_id(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    requests, feedback = topic_factory("req", 4), topic_factory("fb", 4)
    sent = [sample_request(request_id=f"r{i}") for i in range(500)]
    fb = sample_events()["FeedbackEvent"]
    assert isinstance(fb, FeedbackEvent)
    with EventProducer(
        kafka, tmp_path / "journal", requests_topic=requests, feedback_topic=feedback
    ) as producer:
        for event in sent:
            producer.emit_request(event)
        producer.emit_feedback(fb)
        assert producer.flush(30)
        assert producer.stats.spilled == 0
    messages = read_messages(kafka, requests, count=500)
    assert sorted(m.key() for m in messages) == sorted(e.request_id.encode() for e in sent)
    assert read_events(kafka, feedback, FeedbackEvent, count=1) == [fb]


def test_wrong_event_type_is_a_programming_error(kafka: dict[str, str], tmp_path: Path) -> None:
    with EventProducer(kafka, tmp_path / "journal") as producer:
        with pytest.raises(TypeError, match="emit_request takes a RequestEvent"):
            producer.emit_request(sample_events()["FeedbackEvent"])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="emit_feedback takes a FeedbackEvent"):
            producer.emit_feedback(sample_request())  # type: ignore[arg-type]


@pytest.mark.slow
def test_broker_restart_while_emitting_50k_loses_nothing_and_never_blocks(
    tmp_path: Path,
) -> None:
    port = free_port()
    conn = {"bootstrap.servers": f"127.0.0.1:{port}"}
    topics = {"llm.requests": 4}
    events = [sample_request(request_id=f"r{i:05d}") for i in range(50_000)]
    # The 50k pre-built events are the test's heap, not the service's: keep the collector
    # from scanning them in the middle of a timed call.
    gc.collect()
    gc.freeze()
    timings: list[float] = []
    broker = EmbeddedBroker(port=port).start()
    try:
        ensure_topics(conn, topics)
        with EventProducer(conn, tmp_path / "journal") as producer:
            _emit_timed(producer, events[:15_000], timings, rate=10_000)
            assert producer.flush(30)
            before = [m.key() for m in read_messages(conn, "llm.requests", count=15_000)]
            broker.stop()  # the broker goes away while the service keeps emitting
            _emit_timed(producer, events[15_000:35_000], timings, rate=10_000)
            assert producer.spilling
            broker = EmbeddedBroker(port=port).start()  # fresh, empty memory
            ensure_topics(conn, topics)
            _emit_timed(producer, events[35_000:], timings, rate=10_000)
            assert producer.flush(90), f"still pending: {producer.pending()}"
            stats = producer.stats
        after = [m.key() for m in read_messages(conn, "llm.requests", count=35_000, timeout_s=60)]
    finally:
        broker.stop()
        gc.unfreeze()
    arrived = Counter(before + after)
    assert set(arrived) == {e.request_id.encode() for e in events}, "events were lost"
    assert max(arrived.values()) == 1, "events arrived twice"
    assert stats.spilled >= 20_000
    assert stats.producer_restarts >= 1
    print(
        f"max emit {max(timings) * 1e6:.0f} µs, p99 "
        f"{sorted(timings)[int(len(timings) * 0.99)] * 1e6:.1f} µs, spilled {stats.spilled}"
    )
    assert max(timings) < 0.001


def test_journal_survives_a_crash_of_the_service_process(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("req", 2)
    journal = tmp_path / "journal"
    code = textwrap.dedent(f"""
        import os, time
        from producers import EventProducer
        from shadowlab.testing import sample_request
        p = EventProducer({{"bootstrap.servers": "127.0.0.1:{free_port()}"}}, {str(journal)!r},
                          requests_topic={topic!r}, fsync="always")
        deadline = time.monotonic() + 20
        while not p.spilling and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(1000):
            p.emit_request(sample_request(request_id=f"c{{i}}"))
        os._exit(17)  # a crash: no close(), no flush
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, timeout=60, check=False, capture_output=True
    )
    assert done.returncode == 17, done.stderr
    with EventProducer(kafka, journal, requests_topic=topic) as producer:
        assert producer.spilling  # it found the journal left by the crashed process
        assert producer.flush(30)
        assert producer.stats.replayed == 1000
    keys = sorted(m.key() for m in read_messages(kafka, topic, count=1000))
    assert keys == sorted(f"c{i}".encode() for i in range(1000))
