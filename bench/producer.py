"""Producer-side costs: EventProducer throughput vs raw confluent-kafka, Router.choose(), emit p99.

    python bench/producer.py [--n 100000] [--no-restart]

Starts an embedded broker. Throughput is measured to the end of delivery (``flush``), for
EventProducer.emit_request(event) — serialization included — against raw
``Producer.produce()`` of the same events pre-serialized to bytes, same settings, same run.
Then (unless ``--no-restart``) the test suite's broker-restart scenario
(``tests/producers/restart_scenario.py``: 50k events at 10k/s, the broker stopped after 15k
and a fresh one started after 35k) runs in its own process, and its caller-visible emit
latency across the outage is reported: the test asserts only counts (nothing lost, no call
waited on the broker), these figures depend on the machine.
Goals: ratio >= 0.5, choose() < 5 µs, caller-visible emit p99 < 50 µs; across the restart
p99 < 200 µs and every call < 50 ms (waiting for the broker would take its reconnect time,
hundreds of ms to seconds).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from producers import EventProducer, Router
from schemas import RequestEvent, RoutingFlags
from shadowlab.core.kafka import ensure_topics, producer_config
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing import sample_request


def _raw(conn: dict[str, str], topic: str, payloads: list[tuple[str, bytes]]) -> float:
    producer = Producer({**producer_config(conn), "delivery.report.only.error": True})
    started = time.perf_counter()
    for key, value in payloads:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return len(payloads) / (time.perf_counter() - started)


def _ours(
    conn: dict[str, str], topic: str, events: list[RequestEvent], journal: Path
) -> tuple[float, list[float]]:
    timings: list[float] = []
    with EventProducer(conn, journal, requests_topic=topic) as producer:
        started = time.perf_counter()
        for event in events:
            t0 = time.perf_counter()
            producer.emit_request(event)
            timings.append(time.perf_counter() - t0)
        producer.flush(60)
        rate = len(events) / (time.perf_counter() - started)
        if producer.stats.spilled != producer.stats.replayed:
            raise RuntimeError(f"events were left unsent: {producer.stats}")
    return rate, timings


def _choose_cost(n: int) -> float:
    flags = RoutingFlags.parse(
        {
            "route": "faq",
            "version": 1,
            "stage": "canary",
            "primary": "gpt-4",
            "canary": "gpt-4o",
            "canary_weight_bp": 500,
            "salt": "s",
            "changed_at": dt.datetime.now(dt.UTC),
            "changed_by": "bench",
        }
    )
    router = Router([flags])
    keys = [f"user-{i}" for i in range(n)]
    started = time.perf_counter()
    for key in keys:
        router.choose("faq", key)
    return (time.perf_counter() - started) / n


REPO = Path(__file__).resolve().parents[1]


def _restart_scenario() -> dict[str, Any]:
    """Run the broker-restart scenario in its own process; return its JSON summary."""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, str(REPO / "tests" / "producers" / "restart_scenario.py"), tmp],
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the restart scenario failed: {done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="events per run")
    parser.add_argument(
        "--no-restart", action="store_true", help="skip the broker-restart scenario"
    )
    args = parser.parse_args()
    n = args.n
    events = [sample_request(request_id=f"r{i}") for i in range(n)]
    payloads = [(e.request_id, e.to_json()) for e in events]
    gc.collect()
    gc.freeze()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        conn = {"bootstrap.servers": broker.bootstrap_servers}
        ensure_topics(conn, {"raw": 4, "ours": 4, "raw2": 4, "ours2": 4})
        raw = [_raw(conn, "raw", payloads), _raw(conn, "raw2", payloads)]
        ours_a, timings = _ours(conn, "ours", events, Path(tmp) / "j1")
        ours_b, _ = _ours(conn, "ours2", events, Path(tmp) / "j2")
    choose = _choose_cost(200_000)
    timings.sort()
    raw_rate, our_rate = max(raw), max(ours_a, ours_b)
    table = Table(title=f"producer bench (n={n}, {len(payloads[0][1])} B events, 2 runs each)")
    for column in ("measure", "value", "baseline / goal", "ratio / verdict"):
        table.add_column(column, justify="right")
    table.add_row(
        "emit throughput (to delivery)",
        f"{our_rate:,.0f}/s",
        f"raw produce {raw_rate:,.0f}/s",
        f"{our_rate / raw_rate:.2f} (goal ≥ 0.5)",
    )
    table.add_row(
        "Router.choose()", f"{choose * 1e6:.2f} µs", "< 5 µs", "ok" if choose < 5e-6 else "MISSED"
    )
    p99 = timings[int(len(timings) * 0.99)]
    table.add_row(
        "emit_request p50 / p99",
        f"{statistics.median(timings) * 1e6:.1f} / {p99 * 1e6:.1f} µs",
        "p99 < 50 µs",
        "ok" if p99 < 50e-6 else "MISSED",
    )
    table.add_row("emit_request max", f"{timings[-1] * 1e6:.0f} µs", "", "")
    if not args.no_restart:
        restart = _restart_scenario()
        p99_us, max_us = restart["p99_emit_us"], restart["max_emit_us"]
        table.add_row(
            "emit p99 / max, broker restart",
            f"{p99_us:.1f} / {max_us:.0f} µs",
            "p99 < 200 µs, max < 50 ms",
            "ok" if p99_us < 200 and max_us < 50_000 else "MISSED",
        )
        table.add_row(
            "  calls over 1 ms / lost / twice",
            f"{restart['over_1ms']} / {restart['lost']} / {restart['duplicated']}",
            "— / 0 / 0",
            "ok" if restart["lost"] == restart["duplicated"] == 0 else "MISSED",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
