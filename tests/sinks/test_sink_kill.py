"""The sink process SIGKILLed mid-batch and restarted stores every event exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from shadowlab.testing import produce, sample_request, sample_shadow, wait_until

N = 20_000


def _committed(kafka: dict[str, str], group: str, topics: list[str]) -> int:
    consumer = Consumer({**kafka, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(t, p) for t in topics for p in range(2)], 10)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in tps)


@pytest.mark.slow
def test_sink_killed_mid_batch_and_restarted_stores_everything_once(
    kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    requests, shadow = topic_factory("req", 2), topic_factory("shadow", 2)
    group = f"sink-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    env.update(
        {
            "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
            "SHADOWLAB_TOPICS__REQUESTS": requests,
            "SHADOWLAB_TOPICS__SHADOW": shadow,
            "SHADOWLAB_DATA_DIR": str(tmp_path / "data"),
            "SHADOWLAB_SINK__GROUP_ID": group,
            "SHADOWLAB_SINK__BATCH_SIZE": "1500",
        }
    )
    ids = [f"k{i}" for i in range(N)]
    produce(kafka, requests, [sample_request(request_id=i) for i in ids], "request_id")
    produce(kafka, shadow, [sample_shadow(request_id=i) for i in ids], "request_id")

    def sink() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "shadowlab", "run", "sink"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    first = sink()
    # kill it once some batches are committed and more are being read and written
    wait_until(lambda: _committed(kafka, group, [requests, shadow]) > 0, 60, what="no commit")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    at_kill = _committed(kafka, group, [requests, shadow])
    assert 0 < at_kill < 2 * N

    second = sink()
    wait_until(
        lambda: _committed(kafka, group, [requests, shadow]) == 2 * N, 120, what="not all stored"
    )
    second.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0

    query = subprocess.run(
        [
            sys.executable,
            "-m",
            "shadowlab",
            "sql",
            "SELECT (SELECT count() FROM requests FINAL) AS requests, "
            "(SELECT uniqExact(request_id) FROM requests) AS distinct_requests, "
            "(SELECT count() FROM shadow_results FINAL) AS shadow, "
            "(SELECT count() FROM requests) AS raw_rows",
            "--format",
            "json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    (counts,) = json.loads(query.stdout)
    assert counts["requests"] == counts["distinct_requests"] == N
    assert counts["shadow"] == N
    assert counts["raw_rows"] >= N  # rows the killed batch wrote twice are merged away by FINAL
