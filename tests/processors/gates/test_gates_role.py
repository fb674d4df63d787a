"""The rollout controller on real parts: Tansu, chDB, the sink role, a live Router, a webhook.

Traffic is replayed in event time, one tick at a time, routed by a real Router that follows
the controller's flags: the controller's clock is the data's watermark, not the wall clock.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from processors.gates.montecarlo import ModelProfile
from processors.gates.role import GatesRole
from producers.live_router import LiveRouter
from schemas import Alert, GateDecision
from shadowlab.core.flags import set_flags, set_paused, start_rollout
from shadowlab.core.flags_io import FlagsClient
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    is_running,
    make_settings,
    produce,
    read_events,
    running,
    sample_request,
    unique_topics,
    wait_until,
)
from shadowlab.testing.event_traffic import Lockstep, TrafficDriver
from sinks.clickhouse import ClickHouseSink
from sinks.migrations import apply_migrations
from sinks.role import SinkRole

ROUTE = "support-answer"
T0 = dt.datetime(2026, 5, 4, 8, 0, tzinfo=dt.UTC)
TICK_S = 60.0


def _gates() -> list[dict[str, Any]]:
    short = {"window_h": 0.1, "min_n": 300}
    canary = {"window_h": 0.2, "min_n": 200}
    return [
        {"name": "accuracy", "stage": "offline", "metric": "accuracy", "threshold": 0.95,
         "min_n": 1},
        {"name": "p95_latency", "stage": "shadow", "metric": "p95_latency", "threshold": 1.25,
         **short},
        {"name": "error_rate", "stage": "shadow", "metric": "error_rate", "threshold": 0.5,
         "floor": 0.03, **short},
        {"name": "faithfulness", "stage": "canary", "metric": "faithfulness", "threshold": 4.0,
         **canary},
        {"name": "p95_latency", "stage": "canary", "metric": "p95_latency", "threshold": 1.25,
         **canary},
        {"name": "error_rate", "stage": "canary", "metric": "error_rate", "threshold": 0.5,
         "floor": 0.04, **canary},
        {"name": "csat", "stage": "canary", "metric": "csat", "threshold": -0.4, **canary},
    ]  # fmt: skip


def _settings(tmp_path: Path, database: str, **rollout: Any) -> Settings:
    plan = {
        "tick_s": TICK_S, "lateness_s": 0, "poll_s": 0.05, "t_star": 1000,
        "shadow_min_duration_h": 0.1, "max_hold_h": 5, "gates": _gates(),
        "canary_steps": [{"weight_pct": 20, "min_duration_h": 0.1}, {"weight_pct": 50,
                         "min_duration_h": 0}],
        **rollout,
    }  # fmt: skip
    return make_settings(
        tmp_path,
        topics=unique_topics(),
        clickhouse={"database": database},
        sink={"max_wait_s": 0.1},
        rollout=plan,
    )


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012 - one server per test

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Hook", (_Webhook,), {"received": received})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def _start(settings: Settings, kafka: dict[str, str], candidate: str = "gpt-4o") -> None:
    """Flags for the route, a rollout of ``candidate``, and a passing offline result."""
    ensure_topics(kafka, settings.topics.partitions_of())
    with FlagsClient(kafka, settings.topics.flags) as flags:
        now = dt.datetime.now(dt.UTC)
        flags.publish(set_flags(None, route=ROUTE, primary="gpt-4", canary=None,
                                canary_weight_bp=0, actor="t", reason="", now=now))  # fmt: skip
        flags.publish(start_rollout(flags.current(ROUTE), route=ROUTE, candidate=candidate,
                                    actor="t", reason="try it", now=now))  # fmt: skip
    offline = GateDecision(
        decision_id="eval-run-1", route=ROUTE, gate="accuracy", stage="offline",
        window_start=T0, window_end=T0, decided_at=T0, n=200, value=0.99, threshold=0.95,
        outcome="pass", candidate=candidate, baseline_model="gpt-4",
    )  # fmt: skip
    produce(kafka, settings.topics.decisions, [offline])


def test_good_candidate_goes_through_every_stage_and_survives_a_restart(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, ch_db)
    _start(settings, kafka)
    sink = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    gates = [GatesRole(settings, kafka, clickhouse)]
    with running(sink), ExitStack() as controller:
        controller.enter_context(running(gates[0]))
        with LiveRouter(kafka, settings.topics.flags) as router:
            assert router.reader.wait_caught_up(10)
            same = ModelProfile()
            driver = TrafficDriver(kafka, settings.topics, router, ROUTE, rps=10,
                                   primary=same, candidate=same, seed=1)  # fmt: skip
            ticker = Lockstep(driver, lambda: gates[-1], router, start=T0, tick_s=TICK_S)
            ticker.until(lambda: _stage(router) == "canary", steps=40)
            first_run = gates[-1].counters.ticks
            controller.close()  # the controller restarts in the middle of the canary
            gates.append(GatesRole(settings, kafka, clickhouse))
            controller.enter_context(running(gates[-1]))
            ticker.until(lambda: _stage(router) in ("promoted", "rolled_back"), steps=60)
            final = router.flags(ROUTE)
    assert final is not None
    assert (final.stage, final.primary, final.canary, final.override) == (
        "promoted", "gpt-4o", None, None,
    )  # fmt: skip
    assert first_run > 0
    assert gates[-1].counters.ticks > 0
    with FlagsClient(kafka, settings.topics.flags) as flags:
        history = [(f.stage, f.canary_weight_bp) for f in flags.history(ROUTE)]
    assert history == [
        ("promoted", 0), ("offline", 0), ("shadow", 0), ("canary", 2000), ("canary", 5000),
        ("promoted", 0),
    ]  # fmt: skip
    made = sum(g.counters.decisions for g in gates)
    decisions = read_events(kafka, settings.topics.decisions, GateDecision, count=made + 1)
    by_id: dict[str, GateDecision] = {}
    for decision in decisions:  # a restart may re-decide the newest ticks, never differently
        assert by_id.setdefault(decision.decision_id, decision) == decision
    actions = [d for d in by_id.values() if d.action in ("advance", "promote")]
    assert len({d.decided_at for d in actions}) == 4  # one tick per transition
    canary = [d for d in decisions if d.stage == "canary" and d.action == "promote"]
    assert {d.gate for d in canary} == {"faithfulness", "p95_latency", "error_rate", "csat"}
    assert all(d.outcome == "pass" for d in canary)
    assert all(d.window_end - d.window_start >= dt.timedelta(hours=0.2) for d in canary)
    sql = canary[0].sql
    assert "{route:String}" in sql
    assert f"'{ROUTE}'" not in sql.split("-- parameters")[0]  # values are bound, not formatted
    alerts = read_events(kafka, settings.topics.alerts, Alert, count=1)
    assert [a.kind for a in alerts] == ["promoted"]


def test_a_failing_gate_rolls_back_within_two_seconds_and_a_pause_wins(
    kafka: dict[str, str],
    clickhouse: Client,
    ch_db: str,
    tmp_path: Path,
    webhook: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = webhook
    # without the shadow p95 gate, which 40 % failures fail too (a failure is the slowest
    # latency): one failing gate, so one alert while paused
    gates_but_p95 = [g for g in _gates() if (g["stage"], g["name"]) != ("shadow", "p95_latency")]
    settings = _settings(tmp_path, ch_db, webhook_url=url, gates=gates_but_p95)
    _start(settings, kafka)
    sink = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    gates = GatesRole(settings, kafka, clickhouse)
    with running(sink), running(gates), LiveRouter(kafka, settings.topics.flags) as router:
        assert router.reader.wait_caught_up(10)
        broken = ModelProfile(error_rate=0.4)
        driver = TrafficDriver(kafka, settings.topics, router, ROUTE, rps=10,
                               primary=ModelProfile(), candidate=broken, seed=2)  # fmt: skip
        ticker = Lockstep(driver, lambda: gates, router, start=T0, tick_s=TICK_S)
        ticker.until(lambda: _stage(router) == "shadow", steps=5)
        with FlagsClient(kafka, settings.topics.flags) as flags:
            flags.publish(set_paused(flags.current(ROUTE), route=ROUTE, paused=True,
                                     actor="oncall", reason="investigating",
                                     now=dt.datetime.now(dt.UTC)))  # fmt: skip
        ticker.until(lambda: gates.counters.alerts >= 1, steps=20)
        for _ in range(3):  # more failing ticks while paused: no change, no new alert
            ticker.step()
        paused = router.flags(ROUTE)
        assert paused is not None
        assert (paused.stage, paused.paused) == ("shadow", True)
        assert gates.counters.alerts == 1
        with FlagsClient(kafka, settings.topics.flags) as flags:
            flags.publish(set_paused(flags.current(ROUTE), route=ROUTE, paused=False,
                                     actor="oncall", reason="let it decide",
                                     now=dt.datetime.now(dt.UTC)))  # fmt: skip
        ticker.until(lambda: "rollback" in gates.counters.decided_at, steps=3)
        decided = gates.counters.decided_at["rollback"]
        wait_until(lambda: _override(router) is not None, 5, poll_s=0.001)
        latency = time.monotonic() - decided
    final = router.flags(ROUTE)
    assert final is not None
    assert (final.stage, final.override, final.canary_weight_bp) == ("rolled_back", "gpt-4", 0)
    assert "shadow.error_rate" in final.reason
    print(f"rollback latency, decision to Router: {latency * 1000:.1f} ms")
    assert latency < 2.0
    kinds = [a.kind for a in read_events(kafka, settings.topics.alerts, Alert, count=3)]
    assert sorted(kinds) == ["gate_failed", "gate_failed", "rolled_back"]
    texts = [r["text"] for r in received]
    assert len(texts) == 3, texts
    assert sum("paused" in t for t in texts) == 1


def _stage(router: LiveRouter) -> str | None:
    flags = router.flags(ROUTE)
    return flags.stage if flags else None


def _override(router: LiveRouter) -> str | None:
    flags = router.flags(ROUTE)
    return flags.override if flags else None


def test_clickhouse_failures_are_retried_without_losing_a_tick(
    kafka: dict[str, str], clickhouse: Client, tmp_path: Path
) -> None:
    database = f"t_{uuid.uuid4().hex[:12]}"  # not migrated yet: every query fails
    settings = _settings(tmp_path, database)
    _start(settings, kafka)
    role = GatesRole(settings, kafka, clickhouse)
    try:
        with running(role):
            wait_until(lambda: role.counters.failures >= 3, 30)
            assert is_running(role)
            apply_migrations(clickhouse, database)
            sink_role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, database))
            with running(sink_role):  # the offline result first, then primary traffic to give
                decisions = settings.topics.decisions  # the controller its clock
                wait_until(lambda: sink_role.counters.written.get(decisions, 0) >= 1, 30)
                later = sample_request(route=ROUTE, event_time=T0 + dt.timedelta(minutes=10))
                produce(kafka, settings.topics.requests, [later])
                wait_until(lambda: role.counters.ticks >= 1, 30)
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {database}")
    assert role.counters.actions == {"advance": 1}
