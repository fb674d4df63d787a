"""The EventProducer on a real broker: delivers, never blocks, spills and replays, survives
a broker restart and a crash of the service process."""

from __future__ import annotations

import json
import os
import random
import string
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from producers import EventProducer
from schemas import FeedbackEvent
from shadowlab.embedded.broker import free_port
from shadowlab.testing import read_events, read_messages, sample_request
from tests.samples import sample_events

REPO = Path(__file__).resolve().parents[2]


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


def _restart_scenario(journal_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "tests" / "producers" / "restart_scenario.py"),
            str(journal_dir),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(result)
    assert result["flushed"]
    assert result["spilling_while_down"]
    assert result["lost"] == 0, "events were lost"
    assert result["duplicated"] == 0, "events arrived twice"
    assert result["spilled"] >= 20_000
    assert result["producer_restarts"] >= 1
    return result


@pytest.mark.slow
def test_broker_restart_while_emitting_50k_loses_nothing_and_never_blocks(
    tmp_path: Path,
) -> None:
    """50k events at 10k/s; the broker is stopped after 15k and a fresh one started after 35k.

    Nothing may be lost or arrive twice, and no call may block on the broker, shown by counts
    rather than by the wall clock (which a loaded 2-core machine stretches at will): the 20k
    calls made while the broker was down all returned before a broker came back (it is
    started only after them, and no producer reached one meanwhile), and the emitting thread
    never called a librdkafka method that waits for a broker inside ``emit_request``. The
    latency figures are printed; ``bench/producer.py`` reports them.
    """
    result = _restart_scenario(tmp_path / "run")
    assert result["returned_while_down"] == 20_000
    assert result["restarts_while_down"] == 0, "a broker answered while it was down"
    assert result["broker_waits_in_emit"] == 0, "emit_request waited on librdkafka"


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


def _huge(request_id: str) -> Any:
    # ContextDocument texts take up to 1,000,000 characters: a valid event over Kafka's 1 MB,
    # even lz4-compressed (random letters: the broker limits the compressed batch)
    rng = random.Random(7)
    letters = string.ascii_letters + string.digits + "+/"
    documents = [{"text": "".join(rng.choices(letters, k=900_000))} for _ in range(2)]
    return sample_request(request_id=request_id, context_documents=documents)


def _dead_letters(producer: EventProducer) -> list[dict[str, Any]]:
    return [json.loads(line) for line in producer.dead_letter_path.read_text().splitlines()]


@pytest.mark.parametrize("client_limit", [None, "3000000"], ids=["client", "broker"])
def test_an_event_kafka_refuses_as_too_large_is_dead_lettered_and_the_rest_flows(
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    broker_kind: str,
    client_limit: str | None,
) -> None:
    # over the client's message.max.bytes (refused at produce) or, with the client's raised,
    # over the broker's max.message.bytes (refused at delivery: Apache Kafka only; the
    # embedded broker takes any size). Spilled, it would be replayed and refused forever.
    if client_limit and broker_kind != "apache":
        pytest.skip("the embedded broker takes messages of any size")
    topic = topic_factory("req", 1)
    conf = {**kafka, **({"message.max.bytes": client_limit} if client_limit else {})}
    with EventProducer(conf, tmp_path / "journal", requests_topic=topic) as producer:
        producer.emit_request(sample_request(request_id="before"))
        producer.emit_request(_huge("huge"))
        producer.emit_request(sample_request(request_id="after"))
        assert producer.flush(30)
        assert not producer.spilling
        assert producer.stats.dead_lettered == 1
        [letter] = _dead_letters(producer)
    assert letter["kind"] == topic
    assert "message.max.bytes" in letter["reason"]
    assert letter["data"]["event"]["request_id"] == "huge"
    assert sorted(m.key() for m in read_messages(kafka, topic, count=2)) == [b"after", b"before"]


def test_a_too_large_event_in_the_journal_does_not_hold_back_the_rest(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("req", 1)
    down = {"bootstrap.servers": f"127.0.0.1:{free_port()}", "message.max.bytes": "3000000"}
    with EventProducer(down, tmp_path / "journal", requests_topic=topic) as spilled:
        spilled.emit_request(_huge("huge"))  # taken by the client, spilled: no broker
        spilled.emit_request(sample_request(request_id="after"))
        assert spilled.spilling
    with EventProducer(kafka, tmp_path / "journal", requests_topic=topic) as producer:
        assert producer.flush(30)  # the replay refuses the huge one and goes on
        assert producer.stats.dead_lettered == 1
    assert [m.key() for m in read_messages(kafka, topic, count=1)] == [b"after"]
