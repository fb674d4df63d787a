"""Sink throughput: Kafka → ClickHouse through the sink role vs raw clickhouse-connect inserts.

    python bench/sink.py [--n 100000] [--batch 5000]

Starts an embedded broker and a chDB engine. The baseline inserts the same rows (already
built, in batches of ``--batch``) with ``client.insert`` alone; the sink role reads the same
events from Kafka, decodes and validates each, builds the rows and inserts them, committing
after each write. Both write into the same kind of table in the same run. The role's rate is
steady state: timed from the end of its first write (group join and warm-up excluded) to the
last. Goal: ratio >= 0.7. A third column decodes and validates the same bytes with
pydantic and inserts them, in a loop without Kafka: what every event cost before the sink's
msgspec fast path (``schemas/fast.py``), which validates the same constraints in C and hands
pydantic only what it declines.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from clickhouse_connect.driver.client import Client
from confluent_kafka import Producer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from schemas import RequestEvent
from shadowlab.core.gcpause import gc_paused
from shadowlab.core.kafka import ensure_topics, producer_config
from shadowlab.core.settings import load_settings
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing import sample_request
from sinks.clickhouse import ClickHouseSink, open_client, spec_of, to_row
from sinks.migrations import apply_migrations
from sinks.role import SinkRole


def _produce(conn: dict[str, str], topic: str, events: list[RequestEvent]) -> None:
    """Produce as services do (EventProducer's settings: lz4, 5 ms linger, batches)."""
    producer = Producer(producer_config(conn))
    for event in events:
        while True:
            try:
                producer.produce(topic, event.to_json(), event.request_id)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)


def _baselines(client: Client, events: list[RequestEvent], batch: int) -> tuple[float, float]:
    """Rows/s of raw inserts of prebuilt rows, and of decode + validate + insert."""
    apply_migrations(client, "raw")
    spec = spec_of(RequestEvent)
    rows = [to_row(e, spec) for e in events]
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        client.insert("raw.requests", rows[i : i + batch], column_names=spec.columns)
    raw_rate = len(rows) / (time.perf_counter() - started)

    # pydantic decode + validate of the same bytes, rows built, inserted (no Kafka)
    payloads = [e.to_json() for e in events]
    apply_migrations(client, "floor")
    started = time.perf_counter()
    with gc_paused():
        for i in range(0, len(payloads), batch):
            decoded = [RequestEvent.from_json(p) for p in payloads[i : i + batch]]
            client.insert(
                "floor.requests", [to_row(e, spec) for e in decoded], column_names=spec.columns
            )
    return raw_rate, len(payloads) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=5000, help="rows per insert (both sides)")
    args = parser.parse_args()
    console = Console(stderr=True)
    events = [sample_request(request_id=f"r{i}") for i in range(args.n)]
    with tempfile.TemporaryDirectory() as tmp_dir, EmbeddedBroker() as broker:
        tmp = Path(tmp_dir)
        client = open_client(f"chdb://{tmp / 'chdb'}")
        apply_migrations(client, "ours")

        raw_rate, floor_rate = _baselines(client, events, args.batch)

        conn = {"bootstrap.servers": broker.bootstrap_servers}
        settings = load_settings(
            data_dir=tmp,
            clickhouse={"database": "ours"},
            sink={"batch_size": args.batch, "max_wait_s": 5.0},
        )
        ensure_topics(conn, settings.topics.partitions_of())
        with console.status("producing the events to Kafka"):
            _produce(conn, settings.topics.requests, events)
        role = SinkRole(settings, conn, ClickHouseSink(client, "ours"))
        thread = threading.Thread(target=role.run)
        thread.start()
        topic = settings.topics.requests
        with Progress(console=console) as progress:
            task = progress.add_task("sinking", total=args.n)
            while role.counters.written.get(topic, 0) == 0:
                time.sleep(0.001)
            first = role.counters.written[topic]
            started = time.perf_counter()
            while (done := role.counters.written.get(topic, 0)) < args.n:
                progress.update(task, completed=done)
                time.sleep(0.001)
            ours_rate = (args.n - first) / (time.perf_counter() - started)
        role.stop()
        thread.join(60)
        stored = client.query("SELECT count() FROM ours.requests FINAL").result_rows[0][0]
        client.close()
    if stored != args.n:
        raise RuntimeError(f"the sink stored {stored} rows of {args.n}")
    table = Table(
        title=f"sink, Kafka → ClickHouse (n={args.n}, batch {args.batch}, {os.cpu_count()} cores)"
    )
    columns = (
        "sink role rows/s",
        "raw insert rows/s",
        "ratio",
        "goal",
        "validate + insert rows/s",
        "ratio",
    )
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(
        f"{ours_rate:,.0f}",
        f"{raw_rate:,.0f}",
        f"{ours_rate / raw_rate:.2f}",
        "≥ 0.7",
        f"{floor_rate:,.0f}",
        f"{ours_rate / floor_rate:.2f}",
    )
    Console().print(table)


if __name__ == "__main__":
    main()
