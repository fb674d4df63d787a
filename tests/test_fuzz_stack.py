"""10,000 malformed, hostile and valid messages at every input topic of a running stack.

The sink, shadow, join and judge roles run on the real broker, chDB and the model simulator
while a seeded generator writes to ``llm.requests``, ``llm.shadow``, ``llm.feedback``,
``llm.judgements`` and ``llm.comparisons``: text that is not JSON, truncated events, deep
nesting, 900 kB strings, NaN and Infinity, out-of-range numbers and dates, events from the
future, invalid UTF-8, empty payloads and tombstones, wrong types, and exact duplicates of
valid events. Afterwards no role has stopped, every valid service event is stored exactly
once, and every refused message is dead-lettered exactly once by every role that reads it.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from confluent_kafka import KafkaError, Producer

from schemas import (
    Comparison,
    Event,
    EventValidationError,
    FeedbackEvent,
    Judgement,
    RequestEvent,
    ShadowResult,
)
from shadowlab.core.admission import EventTimeBand
from shadowlab.core.kafka import ensure_topics
from shadowlab.roles import RoleSet
from shadowlab.testing import (
    make_settings,
    models_at,
    read_messages,
    route_config,
    simulated_models,
    unique_topics,
    wait_until,
)
from tests.samples import sample_events

SEED = 20261202
PER_TOPIC = {"requests": 4000, "shadow": 2500, "feedback": 1500, "judgements": 1000,
             "comparisons": 1000}  # fmt: skip
TYPES: dict[str, type[Event]] = {"requests": RequestEvent, "shadow": ShadowResult,
                                 "feedback": FeedbackEvent, "judgements": Judgement,
                                 "comparisons": Comparison}  # fmt: skip
#: The roles that read each topic, and so dead-letter what they refuse from it.
READERS = {"requests": ("sink", "shadow", "join", "judge"), "shadow": ("sink", "join", "judge"),
           "feedback": ("sink",), "judgements": ("sink",), "comparisons": ("sink",)}  # fmt: skip
ID_FIELDS = {"requests": "request_id", "shadow": "request_id", "feedback": "feedback_id",
             "judgements": "judgement_id", "comparisons": "request_id"}  # fmt: skip


def _valid(base: dict[str, Any], topic: str, i: int, now: dt.datetime) -> dict[str, Any]:
    data = {**base, "event_time": (now - dt.timedelta(minutes=i % 600)).isoformat()}
    data[ID_FIELDS[topic]] = f"fz-{topic}-{i}"
    if topic != "requests":
        data["request_id"] = f"fz-{topic}-{i}" if topic != "feedback" else f"fz-req-{i}"
    return data


def _mutations(rng: random.Random) -> list[Callable[[dict[str, Any], bytes], bytes | None]]:
    def dumps(data: dict[str, Any]) -> bytes:
        return json.dumps(data).encode()

    def set_field(value: Any) -> Callable[[dict[str, Any], bytes], bytes]:
        return lambda d, _: dumps({**d, rng.choice(sorted(d)): value})

    depth = rng.choice([1_000, 20_000, 200_000])
    return [
        lambda d, b: b"not json " + bytes(rng.randrange(256) for _ in range(rng.randrange(30))),
        lambda d, b: b[: rng.randrange(1, len(b))],  # truncated
        lambda d, b: b'{"request_id": ' + b"[" * depth + b"]" * depth + b"}",
        lambda d, b: b.replace(b"}", b', "latency_ms": NaN}', 1),
        lambda d, b: b.replace(b"{", b'{"cost_usd": Infinity, ', 1),
        set_field(10**30),
        set_field(-1),
        set_field({"deep": [[[[[]]]]]}),
        lambda d, b: dumps({**d, "event_time": "9999-12-31T23:59:59Z"}),
        lambda d, b: dumps({**d, "event_time": "0001-01-01T00:00:00Z"}),
        lambda d, b: dumps({**d, "event_time": "2026-12-02T12:00:00"}),  # no time zone
        lambda d, b: b.replace(b'"', b'"\xff\xfe', 1),  # invalid UTF-8
        lambda d, b: b"",
        lambda d, b: None,  # a tombstone
        lambda d, b: b"[]",
        lambda d, b: dumps({**d, "schema_version": 2}),
        lambda d, b: dumps({**d, "surprise": "field"}),
    ]


def _generate(now: dt.datetime) -> dict[str, list[bytes | None]]:
    rng = random.Random(SEED)
    samples = {type(e).__name__: json.loads(e.to_json()) for e in sample_events().values()}
    out: dict[str, list[bytes | None]] = {}
    for topic, count in PER_TOPIC.items():
        base = samples[TYPES[topic].__name__]
        mutations = _mutations(rng)
        payloads: list[bytes | None] = []
        valid: list[bytes] = []
        for i in range(count):
            data = _valid(base, topic, i, now)
            good = json.dumps(data).encode()
            roll = rng.random()
            if roll < 0.2:
                payloads.append(good)
                valid.append(good)
            elif roll < 0.25 and valid:
                payloads.append(rng.choice(valid))  # a retry: the same bytes again
            elif roll < 0.27:  # from the future: outside every role's admission band
                later = (now + dt.timedelta(days=rng.choice([1, 30, 3000]))).isoformat()
                payloads.append(json.dumps({**data, "event_time": later}).encode())
            else:
                payloads.append(rng.choice(mutations)(data, good))
        if topic == "requests":  # huge but valid: a 900 kB answer (the join keeps a digest)
            for k in range(2):
                huge = {**_valid(base, topic, count + k, now), "answer": "é" * 450_000}
                payloads.append(json.dumps(huge, ensure_ascii=False).encode())
            for k in range(2):  # huge and invalid: dead-lettered as its head, length and digest
                bad = {**_valid(base, topic, count + 2 + k, now), "answer": "é" * 525_000, "x": 1}
                payloads.append(json.dumps(bad, ensure_ascii=False).encode())
        out[topic] = payloads
    return out


def _accepted(event_type: type[Event], payload: bytes | None, now: dt.datetime) -> Event | None:
    """The oracle: the event models and the admission band, as every role applies them."""
    try:
        event = event_type.from_json(payload or b"")
    except EventValidationError:
        return None
    when = getattr(event, "event_time", now)
    return event if EventTimeBand().refusal(when, now) is None else None


def _handled(sink: Any, topic: str) -> int:
    """Messages of ``topic`` the sink stored, dropped as exact copies, or dead-lettered."""
    return int(
        sink.written.get(topic, 0) + sink.retries.get(topic, 0) + sink.dead_lettered.get(topic, 0)
    )


def _count(client: Client, db: str, table: str) -> int:
    return int(client.query(f"SELECT count() FROM {db}.{table} FINAL").result_rows[0][0])


def _produce(
    kafka: dict[str, str], names: dict[str, str], payloads: dict[str, list[bytes | None]]
) -> dict[str, list[bytes | None]]:
    """Write every payload; returns those the broker took.

    Apache Kafka refuses a message over its ``max.message.bytes`` (1 MB) at produce time
    (``MSG_SIZE_TOO_LARGE``): it never enters, so no role can see it. The embedded broker
    takes any size.
    """
    producer = Producer({**kafka, "linger.ms": "5", "message.max.bytes": "2000000"})
    refused: set[tuple[str, int]] = set()
    for topic, values in payloads.items():
        for i, value in enumerate(values):

            def delivered(
                error: KafkaError | None, _message: Any, key: tuple[str, int] = (topic, i)
            ) -> None:
                if error is not None:
                    assert error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
                    refused.add(key)

            producer.produce(names[topic], value=value, on_delivery=delivered)
            producer.poll(0)
    assert producer.flush(60) == 0
    return {topic: [v for i, v in enumerate(values) if (topic, i) not in refused]
            for topic, values in payloads.items()}  # fmt: skip


@pytest.mark.timeout(900)  # the waits inside fail first, saying what was missing
def test_ten_thousand_hostile_messages_stop_no_role_and_lose_nothing(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path, embedded_broker: bool
) -> None:
    now = dt.datetime.now(dt.UTC)
    profiles = [{"name": "gpt-4o", "latency_median_ms": 20, "latency_p95_ms": 40},
                {"name": "judge", "judge": True, "latency_median_ms": 20}]  # fmt: skip
    with simulated_models(profiles, time_scale=0.05) as sim:
        settings = make_settings(
            tmp_path, kafka=kafka, topics=unique_topics(partitions=1),
            models=models_at(sim.base_url, "gpt-4", "gpt-4o", "judge"),
            routes=[route_config("gpt-4", "gpt-4o")], clickhouse={"database": ch_db},
            judge={"model": "judge"}, sink={"max_wait_s": 0.2}, join={"window_s": 30.0},
        )  # fmt: skip
        names = settings.topics.model_dump()
        ensure_topics(kafka, settings.topics.partitions_of())
        payloads = _generate(now)
        assert sum(len(p) for p in payloads.values()) >= 10_000
        roles = RoleSet.build(["sink", "shadow", "join", "judge"], settings, kafka,
                              stage_of=lambda _route: None, clickhouse=clickhouse,
                              embedded=embedded_broker)  # fmt: skip
        with roles:
            payloads = _produce(kafka, names, payloads)
            refused = {t: sum(_accepted(TYPES[t], v, now) is None for v in values)
                       for t, values in payloads.items()}  # fmt: skip
            counters: Any = roles.counters()
            for topic in ("requests", "feedback"):  # only the producer writes these
                wait_until(
                    lambda t=topic: _handled(counters["sink"], names[t]) == len(payloads[t]),
                    300, what=lambda: (roles.alive(), counters),
                )  # fmt: skip
            letters = {
                topic: read_messages(kafka, names[topic] + settings.topics.dlq_suffix,
                                     refused[topic] * len(readers), timeout_s=300)
                for topic, readers in READERS.items()
            }  # fmt: skip
            assert roles.alive() == {"sink": True, "shadow": True, "join": True, "judge": True}
            assert not roles.failures()
    refused_inputs = refused["requests"] + refused["shadow"]
    assert counters["shadow"].malformed == refused["requests"]
    assert counters["join"].malformed == counters["judge"].malformed == refused_inputs
    assert {names[t]: counters["sink"].dead_lettered[names[t]] for t in READERS} == {
        names[t]: refused[t] for t in READERS
    }
    for topic, readers in READERS.items():
        headers = [dict(m.headers() or []) for m in letters[topic]]
        assert Counter(h["role"].decode() for h in headers) == dict.fromkeys(
            readers, refused[topic]
        )
        once = Counter((h["role"], h["source.offset"]) for h in headers)
        assert max(once.values()) == 1, topic  # each refusal once per role
    for topic, table in (("requests", "requests"), ("feedback", "feedback")):
        accepted = {getattr(e, ID_FIELDS[topic]) for v in payloads[topic]
                    if (e := _accepted(TYPES[topic], v, now)) is not None}  # fmt: skip
        assert _count(clickhouse, ch_db, table) == len(accepted)
