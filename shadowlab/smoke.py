"""A round-trip check of the stack: Kafka → decode → ClickHouse → read back equal."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from schemas import RequestEvent
from shadowlab.embedded.stack import Stack
from shadowlab.testing import produce, read_events, sample_request
from sinks.clickhouse import insert_events, query_events


@dataclass
class SmokeResult:
    """What the round trip did, step by step, with timings in milliseconds."""

    request_id: str
    steps: list[tuple[str, float]] = field(default_factory=list)
    equal: bool = False


def run_smoke(stack: Stack) -> SmokeResult:
    """Produce one RequestEvent, consume it back, store it in ClickHouse and read it back."""
    event = sample_request()
    result = SmokeResult(request_id=event.request_id)
    topic = stack.settings.topics.requests
    conf = stack.kafka_config()

    started = time.perf_counter()
    produce(conf, topic, [event], key_field="request_id")
    result.steps.append((f"produce to {topic}", _ms(started)))

    started = time.perf_counter()
    consumed = read_events(conf, topic, RequestEvent, count=1, key=event.request_id)
    result.steps.append((f"consume from {topic}", _ms(started)))

    started = time.perf_counter()
    insert_events(stack.clickhouse, stack.database, consumed)
    result.steps.append((f"insert into {stack.database}.requests", _ms(started)))

    started = time.perf_counter()
    stored = query_events(
        stack.clickhouse,
        stack.database,
        RequestEvent,
        where="request_id = {rid:String}",
        parameters={"rid": event.request_id},
    )
    result.steps.append(("read back from ClickHouse", _ms(started)))
    result.equal = stored == [event]
    return result


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
