"""End to end on real parts: Kafka (Tansu) → decode → ClickHouse (chDB) → read back equal."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from clickhouse_connect.driver.client import Client

from schemas import RequestEvent
from shadowlab.testing import produce, read_messages, sample_request
from sinks.clickhouse import insert_events, query_events

REPO = Path(__file__).resolve().parent.parent


def test_request_event_round_trips_kafka_to_clickhouse(
    kafka: dict[str, str], topic_factory: Callable[..., str], clickhouse: Client, ch_db: str
) -> None:
    topic = topic_factory("llm.requests", partitions=4)
    sent = [sample_request(request_id=f"req-{i}") for i in range(20)]
    produce(kafka, topic, sent, key_field="request_id")

    messages = read_messages(kafka, topic, count=len(sent))
    assert sorted(m.key() for m in messages) == sorted(e.request_id.encode() for e in sent)
    received = [RequestEvent.from_json(m.value()) for m in messages]
    insert_events(clickhouse, ch_db, received)

    stored = query_events(clickhouse, ch_db, RequestEvent, order_by="request_id")
    assert stored == sorted(sent, key=lambda e: e.request_id)


def test_smoke_command_runs_on_a_fresh_data_dir(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    env["SHADOWLAB_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "shadowlab", "smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "equals the one sent" in done.stdout
    assert (tmp_path / "data" / "clickhouse").is_dir()
    # a second run reuses the migrated database and still succeeds
    again = subprocess.run(
        [sys.executable, "-m", "shadowlab", "smoke"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr
