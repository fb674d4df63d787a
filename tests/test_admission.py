"""Every role admits event times only inside the band around its clock; the rest is DLQ'd."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from clickhouse_connect.driver.client import Client

from processors.join import JoinRole
from processors.shadow import ShadowRole
from schemas import Comparison, ShadowResult
from shadowlab.core.admission import EventTimeBand
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.testing import (
    make_settings,
    models_at,
    produce,
    read_events,
    read_messages,
    route_config,
    run_until,
    sample_request,
    sample_shadow,
    simulated_models,
    unique_topics,
)
from sinks.clickhouse import ClickHouseSink
from sinks.role import SinkRole

NOW = dt.datetime(2026, 12, 2, 12, tzinfo=dt.UTC)


def test_the_band_names_itself_in_its_refusal() -> None:
    band = EventTimeBand(max_ahead_s=300, max_age_s=86_400)
    assert band.refusal(NOW + dt.timedelta(seconds=299), NOW) is None
    assert band.refusal(NOW - dt.timedelta(hours=23), NOW) is None
    ahead = band.refusal(NOW + dt.timedelta(days=30), NOW)
    assert ahead is not None
    assert "2,592,000 s ahead" in str(ahead)
    assert "admission.max_ahead_s" in str(ahead)
    old = band.refusal(NOW - dt.timedelta(days=2), NOW)
    assert old is not None
    assert "admission.max_age_s" in str(old)
    assert EventTimeBand().refusal(NOW - dt.timedelta(days=3650), NOW) is None  # a replay


def _future() -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(days=30)


def _settings(tmp_path: Path, kafka: dict[str, str], **sections: object) -> Settings:
    settings = make_settings(tmp_path, kafka=kafka, topics=unique_topics(partitions=1), **sections)
    ensure_topics(kafka, settings.topics.partitions_of())
    return settings


def _dead_letter(kafka: dict[str, str], settings: Settings, role: str) -> dict[str, bytes]:
    topic = settings.topics.requests + settings.topics.dlq_suffix
    (letter,) = read_messages(kafka, topic, 1)
    headers = dict(letter.headers() or [])
    assert headers["role"] == role.encode()
    assert headers["error.class"] == b"EventTimeOutOfBandError"
    assert b"ahead of this role's clock" in headers["error"]
    return headers


def test_the_sink_stores_the_events_around_a_future_one_and_dead_letters_it(
    kafka: dict[str, str], clickhouse: Client, ch_db: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, kafka, sink={"max_wait_s": 0.1})
    good = [sample_request(request_id=f"ok-{i}") for i in range(2)]
    events = [good[0], sample_request(request_id="future", event_time=_future()), good[1]]
    produce(kafka, settings.topics.requests, events)
    role = SinkRole(settings, kafka, ClickHouseSink(clickhouse, ch_db))
    run_until(
        role, lambda: sum(role.counters.dead_lettered.values()) == 1 and bool(role.counters.written)
    )
    rows = clickhouse.query(f"SELECT request_id FROM {ch_db}.requests FINAL ORDER BY request_id")
    assert [r[0] for r in rows.result_rows] == ["ok-0", "ok-1"]
    _dead_letter(kafka, settings, "sink")


def test_the_shadow_role_never_replays_a_future_request(
    kafka: dict[str, str], tmp_path: Path
) -> None:
    with simulated_models([{"name": "gpt-4o", "latency_median_ms": 20}], time_scale=0.1) as sim:
        settings = _settings(
            tmp_path, kafka, models=models_at(sim.base_url, "gpt-4", "gpt-4o"),
            routes=[route_config("gpt-4", "gpt-4o")],
        )  # fmt: skip
        events = [sample_request(request_id="ok-0"), sample_request(event_time=_future()),
                  sample_request(request_id="ok-1")]  # fmt: skip
        produce(kafka, settings.topics.requests, events)
        role = ShadowRole(settings, kafka)
        run_until(role, lambda: role.counters.results == 2 and role.counters.malformed == 1)
    results = read_events(kafka, settings.topics.shadow, ShadowResult, count=2)
    assert sorted(r.request_id for r in results) == ["ok-0", "ok-1"]
    _dead_letter(kafka, settings, "shadow")


def test_the_join_dead_letters_a_future_request_and_joins_the_rest(
    broker: EmbeddedBroker, kafka: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(
        tmp_path, kafka, models=models_at("http://sim", "gpt-4", "gpt-4o"),
        routes=[route_config("gpt-4", "gpt-4o")], join={"window_s": 60.0},
    )  # fmt: skip
    request = sample_request(request_id="ok-0")
    produce(kafka, settings.topics.requests, [request, sample_request(event_time=_future())],
            "request_id")  # fmt: skip
    produce(kafka, settings.topics.shadow, [sample_shadow(request_id="ok-0",
            event_time=request.event_time)], "request_id")  # fmt: skip
    role = JoinRole(settings, broker.bootstrap_servers, embedded=isinstance(broker, EmbeddedBroker))
    run_until(
        role, lambda: role.counters.comparisons["joined"] == 1 and role.counters.malformed == 1
    )
    (comparison,) = read_events(kafka, settings.topics.comparisons, Comparison, count=1)
    assert comparison.request_id == "ok-0"
    _dead_letter(kafka, settings, "join")
