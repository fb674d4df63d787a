"""The shadow role killed mid-stream (SIGKILL) and restarted: no request lost, none paid twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from schemas import ShadowResult
from shadowlab.testing import (
    build_config,
    models_at,
    produce,
    read_events,
    read_messages,
    route_config,
    sample_request,
    simulated_models,
    write_config,
)
from shadowlab.testing.model_server import Simulator

N = 120
MESSAGES = [
    {"role": "system", "content": "The warranty lasts two years."},
    {"role": "user", "content": "How long is the warranty?"},
]


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    profiles = [
        {"name": "gpt-4o", "latency_median_ms": 60, "latency_p95_ms": 90},
        {"name": "ft-1", "latency_median_ms": 80, "latency_p95_ms": 120},
    ]
    with simulated_models(profiles, seed=2, time_scale=1.0) as sim:
        yield sim


def _start(config: Path, cwd: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    return subprocess.Popen(
        [sys.executable, "-m", "shadowlab", "--config", str(config), "run", "shadow"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _count(kafka: dict[str, str], topic: str, at_least: int, timeout_s: float) -> None:
    read_messages(kafka, topic, count=at_least, timeout_s=timeout_s)


@pytest.mark.slow
def test_killed_and_restarted_role_loses_nothing_and_repays_nothing(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    requests, shadow = topic_factory("req", 4), topic_factory("shadow", 4)
    config = write_config(
        tmp_path / "shadowlab.yaml",
        build_config(
            tmp_path / "data",
            kafka=kafka,
            topics={"requests": requests, "shadow": shadow, "flags": topic_factory("flags", 1)},
            models=models_at(simulator.base_url, "gpt-4", "gpt-4o", "ft-1"),
            routes=[route_config("gpt-4", "gpt-4o", "ft-1")],
            shadow={"batch_size": 8, "concurrency": 4},
        ),
    )
    produce(
        kafka,
        requests,
        [sample_request(request_id=f"r{i}", request={"messages": MESSAGES}) for i in range(N)],
        key_field="request_id",
    )
    first = _start(config, tmp_path)
    try:
        _count(kafka, shadow, at_least=40, timeout_s=60)  # well into the stream
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    killed_at = simulator.requests_served
    assert killed_at < 2 * N, "the role finished before it could be killed"
    second = _start(config, tmp_path)
    try:
        results = read_events(kafka, shadow, ShadowResult, count=2 * N, timeout_s=90)
        with pytest.raises(TimeoutError):  # and nothing more: no pair was replayed twice
            read_messages(kafka, shadow, count=2 * N + 1, timeout_s=3)
    finally:
        second.terminate()
        second.wait(30)
    pairs = Counter((r.request_id, r.candidate) for r in results)
    assert set(pairs) == {(f"r{i}", m) for i in range(N) for m in ("gpt-4o", "ft-1")}
    assert max(pairs.values()) == 1, "a delivered result was replayed (paid) again"
    # only calls in flight at the kill (at most `concurrency` = 4), or answered in the last
    # milliseconds before it and not yet delivered, can be paid twice
    repaid = simulator.requests_served - 2 * N
    assert repaid <= 8, f"{repaid} calls were paid twice"
