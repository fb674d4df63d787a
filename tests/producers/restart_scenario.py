"""The broker-restart scenario, run in its own process (a service process: no chDB engine,
no pytest session broker beside it). Prints a JSON summary on the last line.

    python tests/producers/restart_scenario.py JOURNAL_DIR

What it shows about blocking are counts, the same on any machine: how many emit calls returned
while the broker was down (before a fresh one was started), and how many calls to a
librdkafka method that can wait for a broker (``flush``, ``poll``, ``list_topics``) the
emitting thread made inside ``emit_request``. The latency figures are printed for the record
(``bench/producer.py`` reports them); they depend on the machine.
"""

from __future__ import annotations

import gc
import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from confluent_kafka import Producer

from producers import EventProducer, emitter
from schemas import RequestEvent
from shadowlab.core.kafka import ensure_topics
from shadowlab.embedded.broker import EmbeddedBroker, free_port
from shadowlab.testing import read_messages, sample_request

TOPICS = {"llm.requests": 4}


class WatchedProducer(Producer):
    """A librdkafka producer that counts the calls that can wait for a broker, by thread."""

    waits: ClassVar[Counter[int]] = Counter()

    def flush(self, *args: Any, **kwargs: Any) -> int:
        self.waits[threading.get_ident()] += 1
        return super().flush(*args, **kwargs)

    def poll(self, *args: Any, **kwargs: Any) -> int:
        self.waits[threading.get_ident()] += 1
        return super().poll(*args, **kwargs)

    def list_topics(self, *args: Any, **kwargs: Any) -> Any:
        self.waits[threading.get_ident()] += 1
        return super().list_topics(*args, **kwargs)


emitter.Producer = WatchedProducer  # type: ignore[attr-defined] # every producer the EventProducer makes
_EMITTING: Counter[str] = Counter()  # waits of the emitting thread inside emit_request


def emit_timed(
    producer: EventProducer, events: Sequence[RequestEvent], out: list[float], rate: int
) -> None:
    """Emit at about ``rate`` events per second (a busy service), timing every call."""
    me = threading.get_ident()
    started_all = time.perf_counter()
    for i, event in enumerate(events):
        waits = WatchedProducer.waits[me]
        started = time.perf_counter()
        producer.emit_request(event)
        out.append(time.perf_counter() - started)
        _EMITTING["broker_waits"] += WatchedProducer.waits[me] - waits
        if i % 100 == 99:
            ahead = (i + 1) / rate - (time.perf_counter() - started_all)
            if ahead > 0:
                time.sleep(ahead)


def main(journal_dir: Path) -> dict[str, object]:
    """Emit 50k events; stop the broker after 15k, start a fresh one after 35k."""
    port = free_port()
    conn = {"bootstrap.servers": f"127.0.0.1:{port}"}
    events = [sample_request(request_id=f"r{i:05d}") for i in range(50_000)]
    gc.collect()
    gc.freeze()  # the pre-built events are the scenario's heap, not the producer's
    timings: list[float] = []
    broker = EmbeddedBroker(port=port).start()
    try:
        ensure_topics(conn, TOPICS)
        with EventProducer(conn, journal_dir / "journal") as producer:
            emit_timed(producer, events[:15_000], timings, rate=10_000)
            producer.flush(30)
            before = [m.key() for m in read_messages(conn, "llm.requests", count=15_000)]
            broker.stop()  # the broker goes away while the service keeps emitting
            returned_before = len(timings)
            emit_timed(producer, events[15_000:35_000], timings, rate=10_000)
            # every call made while the broker was down returned before a broker came back
            returned_while_down = len(timings) - returned_before
            restarts_while_down = producer.stats.producer_restarts
            spilling_while_down = producer.spilling
            broker = EmbeddedBroker(port=port).start()  # fresh: its memory is empty
            ensure_topics(conn, TOPICS)
            emit_timed(producer, events[35_000:], timings, rate=10_000)
            flushed = producer.flush(90)
            stats = producer.stats
        after = [m.key() for m in read_messages(conn, "llm.requests", count=35_000, timeout_s=60)]
    finally:
        broker.stop()
    arrived = Counter(before + after)
    slowest = sorted(range(len(timings)), key=timings.__getitem__)[-3:]
    timings.sort()
    return {
        "flushed": flushed,
        "spilling_while_down": spilling_while_down,
        "returned_while_down": returned_while_down,
        "restarts_while_down": restarts_while_down,
        "broker_waits_in_emit": _EMITTING["broker_waits"],
        "lost": len({e.request_id.encode() for e in events} - set(arrived)),
        "duplicated": sum(1 for n in arrived.values() if n > 1),
        "spilled": stats.spilled,
        "producer_restarts": stats.producer_restarts,
        "max_emit_us": timings[-1] * 1e6,
        "slowest_calls": slowest,
        "over_1ms": sum(1 for t in timings if t > 0.001),
        "p99_emit_us": timings[int(len(timings) * 0.99)] * 1e6,
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
