"""The admin HTTP API on real parts: roles on the session broker and chDB, a real HTTP client."""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client.parser import text_string_to_metric_families

from processors.gates.role import GatesCounters
from processors.join import JoinCounters
from processors.judge.role import JudgeCounters
from processors.shadow import ShadowCounters
from producers.live_router import LiveRouter
from schemas import Alert, RoutingFlags
from shadowlab.admin import (
    AdminServer,
    Sample,
    counter_samples,
    exposition,
    flag_samples,
    lag_samples,
    redact,
    role_samples,
    secret_values,
)
from shadowlab.core.errors import ConfigError
from shadowlab.core.flags import set_flags
from shadowlab.core.flags_io import FlagsClient
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings
from shadowlab.roles import RoleSet, build_role
from shadowlab.rollout_ops import latest_decisions
from shadowlab.testing import (
    UNREACHABLE_URL,
    make_settings,
    models_at,
    produce,
    read_events,
    route_config,
    sample_request,
    unique_topics,
    wait_until,
)
from sinks.migrations import apply_migrations
from sinks.role import SinkCounters

TOKEN = "tok-" + uuid.uuid4().hex  # unique, so finding it anywhere is a leak
OTHER = "other-" + uuid.uuid4().hex


# --- pure: counters → samples → text format --------------------------------------------------


def test_counter_samples_turn_each_field_into_a_sample_and_dicts_into_labels() -> None:
    shadow = ShadowCounters(consumed=7, in_flight=2)
    shadow.by_status.update({"ok": 5, "error": 1})
    shadow.spend_usd["gpt-4o"] += 0.25
    samples = {(s.name, s.labels): s for s in counter_samples("shadow", shadow)}
    assert samples["shadowlab_shadow_consumed", ()].value == 7
    assert samples["shadowlab_shadow_consumed", ()].kind == "counter"
    assert samples["shadowlab_shadow_in_flight", ()].kind == "gauge"
    assert samples["shadowlab_shadow_by_status", (("status", "ok"),)].value == 5
    assert samples["shadowlab_shadow_by_status", (("status", "error"),)].value == 1
    assert samples["shadowlab_shadow_spend_usd", (("candidate", "gpt-4o"),)].value == 0.25
    assert ("shadowlab_shadow_skipped", ()) not in samples  # an empty dict gives no sample


def test_lag_samples_are_gauges_per_role_topic_and_partition() -> None:
    samples = lag_samples({"shadow": {("llm.requests", 1): 4, ("llm.requests", 0): 2},
                           "sink": {}})  # fmt: skip
    assert [(s.name, s.kind, s.value, s.labels) for s in samples] == [
        ("shadowlab_consumer_lag", "gauge", 2.0,
         (("role", "shadow"), ("topic", "llm.requests"), ("partition", "0"))),
        ("shadowlab_consumer_lag", "gauge", 4.0,
         (("role", "shadow"), ("topic", "llm.requests"), ("partition", "1"))),
    ]  # fmt: skip


def test_counter_samples_cover_every_role_and_leave_out_clock_readings() -> None:
    gates = GatesCounters(ticks=3, actions={"advance": 2}, decided_at={"advance": 1234.5})
    names = {s.name for s in counter_samples("gates", gates)}
    assert names == {
        "shadowlab_gates_ticks",
        "shadowlab_gates_decisions",
        "shadowlab_gates_actions",
        "shadowlab_gates_alerts",
        "shadowlab_gates_webhook_failures",
        "shadowlab_gates_failures",
    }
    sink = SinkCounters(written={"llm.requests": 4}, dead_lettered={"llm.requests": 1})
    sink_samples = counter_samples("sink", sink)
    assert Sample(
        "shadowlab_sink_written", "counter", 4.0, (("topic", "llm.requests"),),
        "written of the sink role",
    ) in sink_samples  # fmt: skip
    join = JoinCounters(open_entries=9, outcomes=collections.Counter(complete=2))
    assert {(s.name, s.kind, s.value) for s in counter_samples("join", join)} >= {
        ("shadowlab_join_open_entries", "gauge", 9.0),
        ("shadowlab_join_outcomes", "counter", 2.0),
    }
    judge = JudgeCounters(spend_usd=1.5, preferences=collections.Counter({"candidate": 3}))
    by_name = {(s.name, s.labels): s.value for s in counter_samples("judge", judge)}
    assert by_name["shadowlab_judge_spend_usd", ()] == 1.5
    assert by_name["shadowlab_judge_preferences", (("preference", "candidate"),)] == 3
    assert counter_samples("x", object()) == []
    assert counter_samples("x", ShadowCounters) == []  # the class, not an instance


def test_exposition_parses_as_prometheus_text_with_counters_totalled() -> None:
    shadow = ShadowCounters(consumed=7, in_flight=2)
    shadow.skipped['stage "x"\\\n'] += 1  # a label value that needs escaping
    flags = _flags("faq", stage="canary", weight=500)
    text = exposition(
        [*role_samples({"shadow": "running", "sink": "failed: boom"}),
         *counter_samples("shadow", shadow), *flag_samples({"faq": flags})]
    ).decode()  # fmt: skip
    metrics = {m.name: m for m in text_string_to_metric_families(text)}
    assert metrics["shadowlab_shadow_consumed"].type == "counter"
    assert [s.name for s in metrics["shadowlab_shadow_consumed"].samples] == [
        "shadowlab_shadow_consumed_total"
    ]
    assert metrics["shadowlab_shadow_in_flight"].type == "gauge"
    (skipped,) = metrics["shadowlab_shadow_skipped"].samples
    assert skipped.labels == {"reason": 'stage "x"\\\n'}
    up = {s.labels["role"]: s.value for s in metrics["shadowlab_role_up"].samples}
    assert up == {"shadow": 1.0, "sink": 0.0}
    stages = {s.labels["stage"]: s.value for s in metrics["shadowlab_stage"].samples}
    assert stages == {"offline": 0, "shadow": 0, "canary": 1, "promoted": 0, "rolled_back": 0}
    (weight,) = metrics["shadowlab_canary_weight_bp"].samples
    assert (weight.labels, weight.value) == ({"route": "faq"}, 500)


def test_a_metric_with_two_label_sets_is_refused() -> None:
    clash = [Sample("m", "gauge", 1.0, (("a", "1"),)), Sample("m", "gauge", 1.0, (("b", "1"),))]
    with pytest.raises(ValueError, match="two kinds or label sets"):
        exposition(clash)


def test_secrets_are_masked() -> None:
    settings = Settings(
        admin={"token": TOKEN}, clickhouse={"dsn": "http://app:pw-s3cret-1@ch:8123/db"}
    )
    secrets = secret_values(settings)
    assert set(secrets) == {TOKEN, "pw-s3cret-1"}
    assert redact(f"failed at http://app:pw-s3cret-1@ch with {TOKEN}", secrets) == (
        "failed at http://app:***@ch with ***"
    )
    assert TOKEN not in repr(settings)


def _flags(route: str, *, stage: Any = "shadow", weight: int = 0) -> RoutingFlags:
    import datetime as dt

    return set_flags(
        None, route=route, primary="gpt-4", canary="gpt-4o", canary_weight_bp=weight,
        actor="t", reason="", now=dt.datetime.now(dt.UTC), stage=stage,
    )  # fmt: skip


# --- the API on running roles ------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        assert self.headers["Content-Type"].startswith("application/json"), self.headers
        return json.loads(self.text)


@dataclass
class Http:
    base: str
    replies: list[Reply] = field(default_factory=list)

    def __call__(
        self, method: str, path: str, body: Any = None, *, token: str | None = None,
        raw: bytes | None = None, authorization: str | None = None,
    ) -> Reply:  # fmt: skip
        async def go() -> Reply:
            headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
            if authorization is not None:
                headers["Authorization"] = authorization
            async with (
                aiohttp.ClientSession() as session,
                session.request(
                    method, self.base + path, json=body, data=raw, headers=headers
                ) as response,
            ):
                return Reply(response.status, dict(response.headers), await response.text())

        reply = asyncio.run(go())
        self.replies.append(reply)
        return reply


@dataclass
class Up:
    settings: Settings
    kafka: dict[str, str]
    roles: RoleSet
    server: AdminServer
    http: Http
    clickhouse: Client


def _settings(tmp: Path, database: str, **overrides: Any) -> Settings:
    suffix = uuid.uuid4().hex[:8]
    values: dict[str, Any] = {
        "topics": unique_topics(suffix=suffix, partitions=1),
        "clickhouse": {"database": database},
        "models": models_at(UNREACHABLE_URL, "gpt-4", "gpt-4o"),
        "routes": [route_config("gpt-4", "gpt-4o", name="faq")],
        "sink": {"group_id": f"sink-{suffix}", "max_wait_s": 0.2},
        "shadow": {"group_id": f"shadow-{suffix}"},
        "rollout": {"poll_s": 0.2},
        "admin": {"port": 0, "token": TOKEN},
    }
    return make_settings(tmp, **{**values, **overrides})


@pytest.fixture(scope="module")
def up(
    kafka: dict[str, str], clickhouse: Client, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Up]:
    database = f"t_admin_{uuid.uuid4().hex[:8]}"
    apply_migrations(clickhouse, database)
    settings = _settings(tmp_path_factory.mktemp("up"), database)
    ensure_topics(kafka, settings.topics.partitions_of())
    with LiveRouter(kafka, settings.topics.flags) as flags:

        def stage_of(route: str) -> str | None:
            current = flags.flags(route)
            return current.stage if current else None

        roles = RoleSet.build(
            ["sink", "shadow", "gates"], settings, kafka, stage_of=stage_of, clickhouse=clickhouse
        )
        with roles, AdminServer(settings, kafka, roles, clickhouse=clickhouse) as server:
            yield Up(settings, kafka, roles, server, Http(server.url), clickhouse)
    clickhouse.command(f"DROP DATABASE IF EXISTS {database}")


def _metrics(up: Up) -> dict[str, Any]:
    reply = up.http("GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {m.name: m for m in text_string_to_metric_families(reply.text)}


def test_health_is_ok_while_every_role_runs(up: Up) -> None:
    reply = up.http("GET", "/health")
    assert reply.status == 200
    assert reply.json() == {
        "status": "ok",
        "roles": {"sink": "running", "shadow": "running", "gates": "running"},
    }


def test_metrics_count_what_the_roles_do(up: Up) -> None:
    before = _metrics(up)
    up_values = {s.labels["role"]: s.value for s in before["shadowlab_role_up"].samples}
    assert up_values == {"sink": 1.0, "shadow": 1.0, "gates": 1.0}
    produce(
        up.kafka, up.settings.topics.requests, [sample_request(route="other") for _ in range(2)]
    )
    requests = up.settings.topics.requests

    def written() -> float:
        family = _metrics(up).get("shadowlab_sink_written")
        samples = [s for s in family.samples if s.labels == {"topic": requests}] if family else []
        return samples[0].value if samples else 0.0

    wait_until(lambda: written() == 2.0, 30, what="the sink to write 2 requests")
    consumed = _metrics(up)["shadowlab_shadow_consumed"].samples[0]
    assert consumed.name == "shadowlab_shadow_consumed_total"
    wait_until(
        lambda: _metrics(up)["shadowlab_shadow_consumed"].samples[0].value == 2.0, 30, what="shadow"
    )
    assert "shadowlab_gates_ticks" in before

    def lag_of(role: str) -> dict[str, float]:
        family = _metrics(up).get("shadowlab_consumer_lag")
        samples = family.samples if family else []
        return {s.labels["partition"]: s.value for s in samples
                if s.labels["role"] == role and s.labels["topic"] == requests}  # fmt: skip

    # each partition of the requests topic the sink and the shadow read, all consumed
    wait_until(lambda: len(lag_of("sink")) == up.settings.topics.partitions, 30, what=lag_of)
    assert set(lag_of("shadow").values()) <= {0.0}
    assert set(lag_of("sink").values()) == {0.0}


def test_changes_need_the_configured_bearer_token(up: Up, tmp_path: Path) -> None:
    body = {"reason": "try", "candidate": "gpt-4o", "primary": "gpt-4"}
    missing = up.http("POST", "/rollout/auth/start", body)
    assert missing.status == 401
    assert "Authorization: Bearer" in missing.json()["error"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = up.http("POST", "/rollout/auth/start", body, token=TOKEN + "x")
    assert wrong.status == 401
    basic = up.http("POST", "/rollout/auth/start", body, authorization=f"Basic {TOKEN}")
    assert basic.status == 401
    assert up.http("GET", "/flags/auth").status == 404  # refused changes changed nothing
    right = up.http("POST", "/rollout/auth/start", body, token=TOKEN)
    assert right.status == 200, right.text
    assert right.json()["flags"]["stage"] == "offline"
    no_token = _settings(tmp_path, up.settings.clickhouse.database, admin={"port": 0})
    no_token = no_token.model_copy(update={"topics": up.settings.topics})
    with AdminServer(no_token, up.kafka, RoleSet({})) as server:
        refused = Http(server.url)("POST", "/rollout/auth/pause", {"reason": "x"}, token=OTHER)
        assert refused.status == 403
        assert "SHADOWLAB_ADMIN__TOKEN" in refused.json()["error"]
        reads = Http(server.url)("GET", "/flags/auth")  # reads need no token
        assert reads.status == 200
        assert reads.json()["stage"] == "offline"


def test_a_short_token_is_refused_before_serving(up: Up, tmp_path: Path) -> None:
    short = _settings(tmp_path, "x", admin={"port": 0, "token": "short"})
    with pytest.raises(ConfigError, match="at least 16 characters") as raised:
        AdminServer(short, up.kafka, RoleSet({})).start()
    assert "short" not in str(raised.value).replace("shorter", "")


def test_rollout_commands_move_the_flags_a_live_router_sees(
    up: Up, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    route, http, auth = "checkout", up.http, {"token": TOKEN}
    with LiveRouter(up.kafka, up.settings.topics.flags) as router:

        def seen(version: int) -> RoutingFlags:
            wait_until(
                lambda: router.version(route) == version,
                30,
                what=f"version {version} at the router",
            )
            flags = router.flags(route)
            assert flags is not None
            return flags

        start = {"candidate": "gpt-4o", "primary": "gpt-4", "reason": "cheaper", "actor": "al"}
        reply = http("POST", f"/rollout/{route}/start", start, **auth)
        assert reply.status == 200, reply.text
        assert reply.json()["action"] == "started rollout of"
        assert reply.json()["warnings"] == []
        first = seen(1)
        assert (first.stage, first.canary, first.changed_by) == ("offline", "gpt-4o", "al")
        assert http("GET", f"/flags/{route}").json() == json.loads(first.to_json())
        again = http("POST", f"/rollout/{route}/start", start, **auth)
        assert again.status == 409
        assert "already rolling out" in again.json()["error"]
        assert http("POST", f"/rollout/{route}/pause", {"reason": "look"}, **auth).status == 200
        assert seen(2).paused
        assert seen(2).changed_by == "admin-api"
        twice = http("POST", f"/rollout/{route}/pause", {"reason": "look"}, **auth)
        assert (twice.status, twice.json()["error"]) == (409, f"route {route!r} is already paused")
        assert http("POST", f"/rollout/{route}/resume", {"reason": "ok"}, **auth).status == 200
        assert not seen(3).paused
        back = http("POST", f"/rollout/{route}/rollback", {"reason": "bad", "actor": "bo"}, **auth)
        assert back.status == 200
        final = seen(4)
        assert (final.stage, final.override, final.canary_weight_bp) == ("rolled_back", "gpt-4", 0)
        assert back.json()["flags"] == json.loads(final.to_json())
    listed = {f["route"]: f for f in http("GET", "/flags").json()}
    assert listed[route]["version"] == 4
    alerts = read_events(up.kafka, up.settings.topics.alerts, Alert, count=4, key=route)
    assert [a.kind for a in alerts] == ["manual"] * 4
    assert alerts[-1].message == f"{route}: rolled back by bo: bad"
    assert alerts[-1].severity == "warning"
    for reply in http.replies:
        assert TOKEN not in reply.text + json.dumps(reply.headers)
    assert TOKEN not in caplog.text
    assert f"rolled back {route} by bo: bad" in caplog.text


def test_refused_changes_say_why(up: Up) -> None:
    http, auth = up.http, {"token": TOKEN}
    with FlagsClient(up.kafka, up.settings.topics.flags) as flags:
        flags.publish(_flags("billing", stage="shadow"))
    promote = http("POST", "/rollout/billing/promote", {"reason": "trust me"}, **auth)
    assert promote.status == 409
    assert "only a canary can be promoted" in promote.json()["error"]
    assert http("GET", "/flags/billing").json()["stage"] == "shadow"
    no_reason = http("POST", "/rollout/billing/rollback", {"reason": "  "}, **auth)
    assert (no_reason.status, "needs a reason" in no_reason.json()["error"]) == (400, True)
    assert http("POST", "/rollout/billing/rollback", {}, **auth).status == 400
    no_candidate = http("POST", "/rollout/new/start", {"reason": "x"}, **auth)
    assert (no_candidate.status, "candidate" in no_candidate.json()["error"]) == (400, True)
    extra = http("POST", "/rollout/billing/pause", {"reason": "x", "candidate": "m"}, **auth)
    assert (extra.status, "unknown field(s) candidate" in extra.json()["error"]) == (400, True)
    typed = http("POST", "/rollout/billing/pause", {"reason": 3}, **auth)
    assert (typed.status, typed.json()["error"]) == (400, "field 'reason' must be a string")
    not_json = http("POST", "/rollout/billing/pause", raw=b"reason=x", **auth)
    assert (not_json.status, "JSON object" in not_json.json()["error"]) == (400, True)
    listed = http("POST", "/rollout/billing/pause", [1], **auth)
    assert listed.status == 400
    unknown = http("POST", "/rollout/billing/skip", {"reason": "x"}, **auth)
    assert (unknown.status, "use one of start, pause" in unknown.json()["error"]) == (404, True)
    no_flags = http("POST", "/rollout/nowhere/pause", {"reason": "x"}, **auth)
    assert (no_flags.status, "has no flags yet" in no_flags.json()["error"]) == (404, True)
    missing = http("GET", "/flags/nowhere")
    assert missing.status == 404
    assert "route 'nowhere' has no flags" in missing.json()["error"]
    path = http("GET", "/nope")
    assert (path.status, "endpoints: GET /health" in path.json()["error"]) == (404, True)
    method = http("GET", "/rollout/billing/pause")
    assert (method.status, "use POST" in method.json()["error"]) == (405, True)
    assert http("GET", "/flags/billing").json()["version"] == 1  # nothing above changed it


def test_gates_give_each_gates_latest_decision_as_the_cli(up: Up) -> None:
    db = up.settings.clickhouse.database
    up.clickhouse.command(
        f"INSERT INTO {db}.gate_decisions (decision_id, route, gate, stage, window_start, "
        "window_end, decided_at, n, value, baseline, threshold, ci_low, ci_high, outcome, "
        "action, sql, schema_version) VALUES "
        "('d1', 'faq', 'p95_latency', 'canary', '2026-01-01 00:00:00', '2026-01-01 01:00:00', "
        "'2026-01-01 01:00:00', 900, 1.31, 812.0, 1.1, 1.2, 1.4, 'fail', 'rollback', '', 1), "
        "('d0', 'faq', 'p95_latency', 'canary', '2026-01-01 00:00:00', '2026-01-01 00:55:00', "
        "'2026-01-01 00:55:00', 800, 1.3, 810.0, 1.1, 0.9, 1.5, 'inconclusive', 'hold', '', 1)"
    )
    reply = up.http("GET", "/gates/faq")
    assert reply.status == 200
    rows = reply.json()
    assert rows == json.loads(json.dumps(latest_decisions(up.clickhouse, db, "faq"), default=str))
    assert [(r["gate"], r["outcome"], r["n"]) for r in rows] == [("p95_latency", "fail", 900)]
    assert up.http("GET", "/gates/checkout").json() == []  # has flags, no decisions yet
    unknown = up.http("GET", "/gates/nowhere")
    assert unknown.status == 404
    assert "neither configured nor has flags" in unknown.json()["error"]


def test_health_is_503_naming_a_failed_role(up: Up) -> None:
    broken = {**up.kafka, "no.such.property": "1"}  # librdkafka refuses the consumer
    shadow = build_role("shadow", up.settings, broken, stage_of=lambda _r: None)
    roles = RoleSet({"shadow": shadow})
    with roles, AdminServer(up.settings, up.kafka, roles, port=0) as server:
        wait_until(lambda: not roles.alive()["shadow"], 30, what="the shadow role to fail")
        reply = Http(server.url)("GET", "/health")
        assert reply.status == 503
        state = reply.json()["roles"]["shadow"]
        assert state.startswith("failed: KafkaException")
        assert "no.such.property" in state
        metrics = Http(server.url)("GET", "/metrics").text
        assert 'shadowlab_role_up{role="shadow"} 0.0' in metrics
