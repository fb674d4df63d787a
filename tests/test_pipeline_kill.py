"""Every role SIGKILLed and restarted under load: once drained, nothing is ``missing``.

Shadow, join, judge and sink run as ``shadowlab run ROLE`` processes on the session broker,
with the model simulator in this process. While requests stream in, a seeded schedule kills
one role at a time with SIGKILL and starts it again at once (what a supervisor does). The
join's window is short, so restarts do make it emit ``missing`` comparisons; what is asserted
is what the analysts and the gates read once the pipeline has drained: every request stored
once, every candidate result joined (a late result supersedes its ``missing``), every sampled
pair judged, and no dead letter (a restart's redeliveries are retries, not conflicts).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer

from processors.judge.role import judge_sampled
from schemas import Comparison, Event, Judgement
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import load_settings
from shadowlab.testing import (
    build_config,
    end_offsets,
    group_lag,
    models_at,
    produce,
    route_config,
    sample_request,
    simulated_models,
    unique_topics,
    wait_until,
    write_config,
)

ROLES = ("shadow", "join", "judge", "sink")
PAIRWISE_RATE = 0.5
SINK_TOPICS = ("requests", "shadow", "comparisons", "judgements")


class Pipeline:
    """The four roles as processes of one config; ``kill`` is SIGKILL and a restart."""

    def __init__(self, config: Path, cwd: Path) -> None:
        self.config, self.cwd = config, cwd
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: list[str] = []

    def start(self, role: str) -> None:
        with (self.cwd / f"{role}.log").open("ab") as log:  # the process keeps its own copy
            self.procs[role] = subprocess.Popen(
                [sys.executable, "-m", "shadowlab", "--config", str(self.config), "run", role],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self, role: str, *, down_until: Callable[[], bool] | None = None) -> None:
        """SIGKILL ``role`` and start it again (once ``down_until()`` holds, if given)."""
        self.procs[role].send_signal(signal.SIGKILL)
        self.procs[role].wait(30)
        self.kills.append(role)
        if down_until is not None:
            wait_until(down_until, 300, what=f"{role} down: the condition never held")
        self.start(role)

    def alive(self) -> dict[str, bool]:
        return {role: proc.poll() is None for role, proc in self.procs.items()}

    def stop(self) -> dict[str, int | None]:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for role, proc in self.procs.items():
            try:
                codes[role] = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[role] = None
        return codes

    def sql(self, query: str) -> list[dict[str, Any]]:
        done = subprocess.run(
            [sys.executable, "-m", "shadowlab", "--config", str(self.config), "sql", query,
             "--format", "json"],
            cwd=self.cwd, env=self.env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        rows: list[dict[str, Any]] = json.loads(done.stdout)
        return rows


class SeenIds:
    """The request ids of the events on ``topic`` that ``keep`` accepts, read as they come."""

    def __init__(
        self, kafka: dict[str, str], topic: str, schema: type[Event], keep: Callable[[Any], bool]
    ) -> None:
        self.ids: set[str] = set()
        self._schema, self._keep = schema, keep
        self._consumer = Consumer(
            {**kafka, "group.id": f"t-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"}
        )
        self._consumer.subscribe([topic])

    def poll(self) -> int:
        for message in self._consumer.consume(500, timeout=0.2):
            if message.error() is None and message.value():
                event: Any = self._schema.from_json(message.value())
                if self._keep(event):
                    self.ids.add(event.request_id)
        return len(self.ids)

    def close(self) -> None:
        self._consumer.close()


def _dead_letters(kafka: dict[str, str], topics: list[str]) -> int:
    consumer = Consumer({**kafka, "group.id": f"t-{uuid.uuid4().hex[:6]}"})
    try:
        listed = consumer.list_topics(timeout=10).topics
    finally:
        consumer.close()
    partitions = [(t, p) for t in topics if t in listed for p in listed[t].partitions]
    return sum(end_offsets(kafka, partitions).values()) if partitions else 0


@pytest.fixture
def simulator_url() -> Iterator[str]:
    profiles = [
        {"name": "gpt-4o", "latency_median_ms": 40, "latency_p95_ms": 80},
        {"name": "judge", "judge": True, "latency_median_ms": 30},
    ]
    with simulated_models(profiles, seed=5, time_scale=1.0) as sim:
        yield sim.base_url


@pytest.mark.slow
@pytest.mark.timeout(1200)  # the waits inside fail first, saying what was missing
def test_every_role_killed_under_load_leaves_no_missing_comparison_once_drained(
    kafka: dict[str, str], simulator_url: str, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    config = write_config(
        tmp_path / "shadowlab.yaml",
        build_config(
            tmp_path / "data", kafka=kafka, topics=unique_topics(partitions=2),
            models=models_at(simulator_url, "gpt-4", "gpt-4o", "judge", timeout_s=30),
            routes=[route_config("gpt-4", "gpt-4o")],
            shadow={"group_id": f"shadow-{tag}", "batch_size": 20},
            join={"group_id": f"join-{tag}", "window_s": 2.0, "tick_s": 0.2},
            judge={"group_id": f"judge-{tag}", "model": "judge", "sample_rate": 0.0,
                   "pairwise_sample_rate": PAIRWISE_RATE, "batch_size": 20},
            sink={"group_id": f"sink-{tag}", "max_wait_s": 0.2, "batch_size": 200},
        ),
    )  # fmt: skip
    settings = load_settings(config)
    topics = settings.topics
    ensure_topics(kafka, topics.partitions_of())
    pipeline = Pipeline(config, tmp_path)
    for role in ROLES:
        pipeline.start(role)
    ids: list[str] = []
    flowing = threading.Event()
    flowing.set()

    def traffic() -> None:  # 40 requests a second, in steps of 8, until the kills are done
        while flowing.is_set():
            step = [sample_request(request_id=f"kill-{len(ids) + i}") for i in range(8)]
            produce(kafka, topics.requests, step, "request_id")
            ids.extend(r.request_id for r in step)
            time.sleep(0.2)

    producer = threading.Thread(target=traffic, daemon=True)
    joined = SeenIds(kafka, topics.comparisons, Comparison, lambda c: c.status == "joined")
    missed = SeenIds(kafka, topics.comparisons, Comparison, lambda c: c.status == "missing")
    judged = SeenIds(kafka, topics.judgements, Judgement, lambda j: j.kind == "pairwise")
    try:
        producer.start()
        schedule = random.Random(16)  # a test's kill schedule
        victims = [*ROLES, *schedule.sample(ROLES, len(ROLES))]  # each role killed twice
        for victim in victims:
            time.sleep(schedule.uniform(1.0, 4.0))  # a kill at any moment: the point is when
            # the shadow role stays down until the join has given up on a request: its result
            # then arrives after the window, as after any slow restart
            missing_before = missed.poll()
            pipeline.kill(victim, down_until=(lambda m=missing_before: missed.poll() > m)
                          if victim == "shadow" else None)  # fmt: skip
        flowing.clear()
        producer.join(60)
        sampled = {i for i in ids if judge_sampled(i, "pairwise", PAIRWISE_RATE)}
        wait_until(lambda: joined.poll() == len(ids), 600,
                   what=lambda: (len(ids) - len(joined.ids), pipeline.alive()))  # fmt: skip
        wait_until(lambda: judged.poll() == len(sampled), 600, what=lambda: sampled - judged.ids)
        sink_input = [(getattr(topics, t), p) for t in SINK_TOPICS for p in range(2)]
        wait_until(lambda: group_lag(kafka, settings.sink.group_id, sink_input) == 0, 600,
                   what=lambda: group_lag(kafka, settings.sink.group_id, sink_input))  # fmt: skip
        assert judged.ids == sampled
        assert missed.ids <= joined.ids  # every missing one was joined later
        assert all(pipeline.alive().values()), pipeline.alive()
    finally:
        for seen in (joined, missed, judged):
            seen.close()
        codes = pipeline.stop()
    assert sorted(pipeline.kills) == sorted(ROLES * 2)
    assert codes == dict.fromkeys(ROLES, 0)

    (stored,) = pipeline.sql(
        "SELECT (SELECT count() FROM requests FINAL) AS requests, "
        "(SELECT count() FROM shadow_results FINAL) AS results, "
        "(SELECT count() FROM comparisons FINAL) AS comparisons, "
        "(SELECT countIf(status = 'missing') FROM comparisons FINAL) AS missing, "
        "(SELECT count() FROM judgements FINAL WHERE kind = 'pairwise') AS judged"
    )
    n = len(ids)
    assert stored == {"requests": n, "results": n, "comparisons": n, "missing": 0,
                      "judged": len(sampled)}  # fmt: skip
    letters = [getattr(topics, t) + topics.dlq_suffix for t in SINK_TOPICS]
    assert _dead_letters(kafka, letters) == 0
