"""The controller's clock: the newest stored request, never one dated past wall clock + skew."""

from __future__ import annotations

import datetime as dt

from clickhouse_connect.driver.client import Client

from processors.gates.evaluate import Alphas
from processors.gates.queries import GateQueries
from shadowlab.testing import sample_request
from sinks.clickhouse import insert_events

ROUTE = "support-answer"


def test_a_request_from_the_future_does_not_move_the_watermark(
    clickhouse: Client, ch_db: str
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    live = [sample_request(route=ROUTE, event_time=now - dt.timedelta(minutes=m)) for m in range(5)]
    forged = sample_request(route=ROUTE, event_time=now + dt.timedelta(days=30))
    insert_events(clickhouse, ch_db, [*live, forged])
    queries = GateQueries(
        clickhouse, ch_db, alphas=Alphas(0.05, 0.05), tick_s=300, t_star=lambda gate: 1000
    )
    bound = now + dt.timedelta(minutes=5)
    assert queries.watermark(ROUTE, not_after=bound) == now
    # a replay of recorded traffic (all of it in the past) is read as it was
    assert queries.watermark(ROUTE, not_after=now - dt.timedelta(minutes=2)) == now - dt.timedelta(
        minutes=2
    )
    assert queries.watermark("other-route", not_after=bound) is None
