"""Join throughput: the faust join role vs a bare faust counting agent on the same broker.

    python bench/join.py [--n 20000]

Starts an embedded broker and fills two 4-partition topics with ``--n`` requests and their
``--n`` candidate results (half of the results before their requests). The baseline is
faust's canonical counting agent: one agent over both topics doing ``counts[key] += 1`` in a
changelog-backed table, nothing else, with the same app settings as the join (on the
embedded broker both write one message per producer batch: see ``join.producer_max_batch_size``).
For context the table also shows an agent that only counts in a Python variable (no table:
no state survives a restart), which any changelog-backed agent trails by a wide margin.
The join role reads the same events, decodes and validates each, keeps its state in its
changelog-backed table and emits one comparison per pair. Rates are input events per second,
timed from the first event each app receives to the last. Goal: ratio >= 0.5.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from processors.join import JoinRole
from schemas import Event
from shadowlab.core.kafka import ensure_topics, producer_config
from shadowlab.core.settings import Settings, load_settings
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing import sample_request, sample_shadow


def _produce(conn: dict[str, str], topic: str, events: list[Event], key: str) -> None:
    producer = Producer(producer_config(conn))
    for event in events:
        while True:
            try:
                producer.produce(topic, event.to_json(), getattr(event, key))
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)


def _timed(total: int, seen: Callable[[], int], label: str, console: Console) -> float:
    """Wait until ``seen()`` reaches ``total``; events/s from the first event to the last."""
    with Progress(console=console) as progress:
        task = progress.add_task(label, total=total)
        while seen() == 0:
            time.sleep(0.001)
        started, first = time.perf_counter(), seen()
        while (done := seen()) < total:
            progress.update(task, completed=done)
            time.sleep(0.005)
        return (total - first) / (time.perf_counter() - started)


def _counter(
    settings: Settings, servers: str, total: int, console: Console, *, table: bool
) -> float:
    count = 0
    stop = threading.Event()

    async def main() -> None:
        app = faust.App(
            f"counter-{time.time_ns()}",
            broker=f"kafka://{servers}",
            broker_session_timeout=6.0,
            broker_heartbeat_interval=0.5,
            topic_partitions=settings.topics.partitions,
            store="memory://",
            web_enabled=False,
            datadir=str(settings.data_dir / "counter"),
            consumer_auto_offset_reset="earliest",
            producer_max_batch_size=1,  # as the join on the embedded broker
        )
        topic = app.topic(
            settings.topics.requests,
            settings.topics.shadow,
            key_serializer="raw",
            value_serializer="raw",
        )
        counts = app.Table("counts", default=int)

        async def counter(stream: Any) -> None:
            nonlocal count
            async for event in stream.events():
                if table:
                    counts[event.key] += 1
                count += 1

        app.agent(topic, name="counter")(counter)
        await app.start()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await app.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        label = "faust counting agent" + ("" if table else " (no table)")
        return _timed(total, lambda: count, label, console)
    finally:
        stop.set()
        thread.join(60)


def _join(settings: Settings, servers: str, total: int, console: Console) -> float:
    role = JoinRole(settings, servers, embedded=True, report_every_s=3600)
    thread = threading.Thread(target=role.run)
    thread.start()
    try:
        return _timed(total, lambda: role.counters.consumed, "join role", console)
    finally:
        role.stop()
        thread.join(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="requests (and as many results)")
    args = parser.parse_args()
    console = Console(stderr=True)
    requests = [sample_request(request_id=f"r{i}") for i in range(args.n)]
    results = [sample_shadow(request_id=r.request_id, event_time=r.event_time) for r in requests]
    half = args.n // 2
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        conn = {"bootstrap.servers": broker.bootstrap_servers}
        settings = load_settings(
            data_dir=Path(tmp),
            models=[{"name": n, "base_url": "http://sim"} for n in ("gpt-4", "gpt-4o")],
            routes=[
                {"name": "support-answer", "primary": "gpt-4", "candidates": [{"model": "gpt-4o"}]}
            ],
        )
        ensure_topics(conn, settings.topics.partitions_of())
        with console.status("producing the events to Kafka"):
            _produce(conn, settings.topics.shadow, list(results[:half]), "request_id")
            _produce(conn, settings.topics.requests, list(requests), "request_id")
            _produce(conn, settings.topics.shadow, list(results[half:]), "request_id")
        total = 2 * args.n
        servers = broker.bootstrap_servers
        counting = _counter(settings, servers, total, console, table=True)
        no_table = _counter(settings, servers, total, console, table=False)
        ours = _join(settings, servers, total, console)
    table = Table(title=f"join (n={args.n} pairs, {os.cpu_count()} cores), input events/s")
    for column in ("join role", "counting agent", "ratio", "goal", "no-table loop", "ratio"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{ours:,.0f}",
        f"{counting:,.0f}",
        f"{ours / counting:.2f}",
        "≥ 0.5",
        f"{no_table:,.0f}",
        f"{ours / no_table:.2f}",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
