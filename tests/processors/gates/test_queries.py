"""The gate queries on chDB: canary arms matched within each tick, failures as the slowest."""

from __future__ import annotations

import datetime as dt
import math

from clickhouse_connect.driver.client import Client

from processors.gates.evaluate import Alphas, OrderStats, Pairs
from processors.gates.queries import GateQueries, Window
from schemas import RequestEvent
from shadowlab.core.plan import DEFAULT_GATES
from shadowlab.testing import sample_request
from sinks.clickhouse import insert_events

ROUTE = "support-answer"
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
GATES = {g.key: g for g in DEFAULT_GATES}


def calls(arm: str, minute: int, statuses: list[str]) -> list[RequestEvent]:
    model = "gpt-4o" if arm == "canary" else "gpt-4"
    return [
        sample_request(
            route=ROUTE, event_time=T0 + dt.timedelta(minutes=minute, seconds=i), arm=arm,
            model=model, status=status, latency_ms=100.0 + i,
            error_type=None if status == "ok" else "APITimeoutError",
        )
        for i, status in enumerate(statuses)
    ]  # fmt: skip


def test_canary_pairs_match_the_arms_within_each_tick(clickhouse: Client, ch_db: str) -> None:
    # tick 1 (minutes 0-4): 3 canary calls, 10 primary; tick 2 (minutes 5-9): 5 canary, 2 primary
    insert_events(clickhouse, ch_db, [
        *calls("canary", 0, ["timeout", "ok", "ok"]), *calls("primary", 1, ["ok"] * 10),
        *calls("canary", 5, ["ok"] * 5), *calls("primary", 6, ["error", "ok"]),
    ])  # fmt: skip
    queries = GateQueries(clickhouse, ch_db, alphas=Alphas(0.05, 0.05), tick_s=300,
                          t_star=lambda gate: 1000)  # fmt: skip
    window = Window(ROUTE, "gpt-4", "gpt-4o", T0, T0 + dt.timedelta(hours=1))
    errors, _ = queries.fetchers[("canary", "error_rate")](GATES["canary.error_rate"], window)
    assert isinstance(errors, Pairs)
    # min(3, 10) + min(5, 2) pairs: the extra calls of either arm are left out
    assert errors.n == 5
    assert errors.mean(0) == 1 / 5  # the canary's timeout is in whichever pair it fell
    assert errors.mean(1) == 1 / 5  # the primary's error: both its tick-2 calls are paired
    canary, primary = queries.fetchers[("canary", "p95_latency")](GATES["canary.p95_latency"],
                                                                  window)  # fmt: skip
    assert isinstance(canary, OrderStats)
    assert isinstance(primary, OrderStats)
    assert canary.n == primary.n == 5
    assert max(canary.values.values()) == math.inf  # the timeout is the slowest latency
    assert max(primary.values.values()) == math.inf
    sql = queries.evaluate(GATES["canary.error_rate"], window).sql
    assert "row_number() OVER (PARTITION BY b" in sql
    assert "-- parameters" in sql


def test_requests_per_hour_reads_the_day_before(clickhouse: Client, ch_db: str) -> None:
    route = "per-hour"
    events = [sample_request(route=route, event_time=T0 - dt.timedelta(minutes=m))
              for m in range(0, 120, 2)]  # fmt: skip
    insert_events(clickhouse, ch_db, events)
    queries = GateQueries(clickhouse, ch_db, alphas=Alphas(0.05, 0.05), tick_s=300,
                          t_star=lambda gate: 1000)  # fmt: skip
    rate = queries.requests_per_hour(route, end=T0 + dt.timedelta(seconds=1))
    assert rate is not None
    assert abs(rate - 60 / (118 / 60)) < 1e-6  # 60 requests over 118 minutes
    assert queries.requests_per_hour(route, end=T0 - dt.timedelta(minutes=100)) is None
