"""The shadow role on real parts: Tansu, the simulator over HTTP, the real openai client."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.clients import model_client
from processors.shadow import ShadowRole, arrival_offsets, replay
from schemas import ShadowResult
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    make_settings,
    models_at,
    produce,
    read_events,
    replay_once,
    route_config,
    run_until,
    sample_request,
    simulated_models,
)
from shadowlab.testing.model_server import Simulator

MESSAGES = [
    {"role": "system", "content": "The warranty lasts two years. Returns are free."},
    {"role": "user", "content": "How long is the warranty?"},
]


PROFILES = [
    {"name": "gpt-4o", "latency_median_ms": 400, "latency_p95_ms": 800},
    {"name": "ft-1", "latency_median_ms": 600, "latency_p95_ms": 900},
    {"name": "broken", "error_rate": 1.0},
    {"name": "stuck", "hang_rate": 1.0, "hang_s": 100},
]


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with simulated_models(PROFILES, seed=1, time_scale=0.05) as sim:
        yield sim


def _settings(
    sim: Simulator,
    tmp_path: Path,
    requests: str,
    shadow: str,
    candidates: list[dict[str, Any]],
    **shadow_cfg: Any,
) -> Settings:
    prices = {"price_input_per_1k": 0.01, "price_output_per_1k": 0.03}
    return make_settings(
        tmp_path,
        # a deadline past every simulated latency, except the hang's (cut at 0.5 s)
        models=[
            *models_at(sim.base_url, "gpt-4", "gpt-4o", "ft-1", **prices, timeout_s=5),
            *models_at(sim.base_url, "broken", "stuck", **prices, timeout_s=0.5),
        ],
        routes=[route_config("gpt-4", *candidates)],
        topics={"requests": requests, "shadow": shadow},
        shadow={"batch_size": 50, "backoff_base_s": 0.01, **shadow_cfg},
    )


def _requests(n: int, **changes: Any) -> list[Any]:
    return [
        sample_request(request_id=f"r{i}", request={"messages": MESSAGES}, **changes)
        for i in range(n)
    ]


def test_n_requests_give_n_times_candidates_results(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    requests, shadow = topic_factory("req", 4), topic_factory("shadow", 4)
    settings = _settings(
        simulator, tmp_path, requests, shadow, [{"model": "gpt-4o"}, {"model": "ft-1"}]
    )
    produce(kafka, requests, _requests(30), key_field="request_id")
    role = ShadowRole(settings, kafka)
    run_until(role, lambda: role.counters.results >= 60)
    results = read_events(kafka, shadow, ShadowResult, count=60)
    pairs = Counter((r.request_id, r.candidate) for r in results)
    assert set(pairs) == {(f"r{i}", m) for i in range(30) for m in ("gpt-4o", "ft-1")}
    assert max(pairs.values()) == 1
    for r in results:
        assert (r.status, r.primary_model, r.route) == ("ok", "gpt-4", "support-answer")
        assert r.answer == "The warranty lasts two years."
        assert r.ttft_ms is not None
        assert r.cost_usd == pytest.approx(
            (r.prompt_tokens * 0.01 + r.completion_tokens * 0.03) / 1000, rel=1e-12
        )
    assert role.counters.spend_usd["gpt-4o"] > 0


def test_errors_and_timeouts_are_results_with_their_type(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    requests, shadow = topic_factory("req", 2), topic_factory("shadow", 2)
    settings = _settings(
        simulator,
        tmp_path,
        requests,
        shadow,
        [{"model": "broken"}, {"model": "stuck"}],
        max_attempts=3,
    )
    produce(kafka, requests, _requests(5), key_field="request_id")
    role = ShadowRole(settings, kafka)
    run_until(role, lambda: role.counters.results >= 10)
    results = read_events(kafka, shadow, ShadowResult, count=10)
    broken = [r for r in results if r.candidate == "broken"]
    stuck = [r for r in results if r.candidate == "stuck"]
    assert {(r.status, r.error_type, r.attempts) for r in broken} == {
        ("error", "InternalServerError", 3)
    }
    # the client's read timeout and the whole-call deadline are both timeout_s: either fires
    assert {r.status for r in stuck} == {"timeout"}
    assert {r.error_type for r in stuck} <= {"APITimeoutError", "CallDeadlineExceededError"}
    assert all(450 <= r.latency_ms <= 500 for r in stuck)


def test_budget_is_respected_and_skips_are_counted(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    requests, shadow = topic_factory("req", 1), topic_factory("shadow", 1)
    one_call = (20 * 0.01 + 8 * 0.03) / 1000  # about one replay's cost
    settings = _settings(
        simulator,
        tmp_path,
        requests,
        shadow,
        [{"model": "gpt-4o", "max_usd_per_hour": one_call * 3}],
        concurrency=1,
    )
    produce(kafka, requests, _requests(20), key_field="request_id")
    role = ShadowRole(settings, kafka)
    run_until(role, lambda: role.counters.consumed >= 20 and role.counters.in_flight == 0)
    spent = role.counters.spend_usd["gpt-4o"]
    assert role.counters.results < 20
    assert role.counters.skipped["budget_usd"] == 20 - role.counters.results
    assert spent <= one_call * 3 + one_call * 2  # the cap, plus the call that crossed it


def test_non_replayable_requests_are_never_sent(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    requests, shadow = topic_factory("req", 1), topic_factory("shadow", 1)
    settings = _settings(simulator, tmp_path, requests, shadow, [{"model": "gpt-4o"}])
    private = sample_request(request_id="secret", request={"messages": MESSAGES}, replayable=False)
    produce(kafka, requests, [private, *_requests(3)], key_field="request_id")
    served_before = simulator.requests_served
    role = ShadowRole(settings, kafka)
    run_until(role, lambda: role.counters.results >= 3)
    assert role.counters.skipped["not_replayable"] == 1
    assert simulator.requests_served - served_before == 3
    results = read_events(kafka, shadow, ShadowResult, count=3)
    assert "secret" not in {r.request_id for r in results}


def test_malformed_requests_go_to_the_dead_letter_topic(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    from confluent_kafka import Producer

    from shadowlab.core.kafka import ensure_topics
    from shadowlab.testing import read_messages

    requests, shadow = topic_factory("req", 1), topic_factory("shadow", 1)
    ensure_topics(kafka, {requests + ".dlq": 1})
    settings = _settings(simulator, tmp_path, requests, shadow, [{"model": "gpt-4o"}])
    producer = Producer(kafka)
    producer.produce(requests, value=b'{"request_id": 5}', key=b"bad")
    producer.flush(10)
    produce(kafka, requests, _requests(2), key_field="request_id")
    role = ShadowRole(settings, kafka)
    run_until(role, lambda: role.counters.results >= 2)
    [dead] = read_messages(kafka, requests + ".dlq", count=1)
    assert dead.value() == b'{"request_id": 5}'
    headers = dict(dead.headers() or [])
    assert b"invalid RequestEvent" in headers["error"]
    assert role.counters.malformed == 1


def test_timeout_s_is_a_deadline_for_the_whole_call(tmp_path: Path) -> None:
    # a real-time stream of a word every ~0.1 s for ~3 s: no wait between reads reaches 1 s
    # (httpx's timeout), but the call as a whole does
    trickle = {"name": "trickle", "latency_median_ms": 3000, "latency_p95_ms": 3100}
    with simulated_models([trickle], seed=1, time_scale=1.0) as sim:
        settings = make_settings(tmp_path, models=models_at(sim.base_url, "trickle", timeout_s=1.0))
        endpoint = settings.model("trickle")
        event = sample_request(request={"messages": MESSAGES})

        async def call() -> ShadowResult | None:
            client = model_client(endpoint, max_retries=0)
            async with client:
                return await replay(client, endpoint, event, settings.shadow)

        result = asyncio.run(call())
    assert result is not None
    assert (result.status, result.error_type) == ("timeout", "CallDeadlineExceededError")
    assert result.latency_ms == pytest.approx(1000, abs=1)
    assert result.answer is None  # cut at the deadline, not served to the end of the stream


def record_starts(monkeypatch: pytest.MonkeyPatch) -> dict[tuple[str, str], float]:
    """When each (request_id, candidate) replay started (``time.monotonic()``)."""
    starts: dict[tuple[str, str], float] = {}

    async def recorded(client: Any, endpoint: Any, event: Any, *args: Any) -> Any:
        starts[(event.request_id, endpoint.name)] = time.monotonic()
        return await replay(client, endpoint, event, *args)

    monkeypatch.setattr("processors.shadow.replay", recorded)
    return starts


def test_a_backlog_is_replayed_within_each_candidates_and_endpoints_limits(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests, shadow = topic_factory("req", 2), topic_factory("shadow", 2)
    settings = make_settings(
        tmp_path,
        models=[
            *models_at(simulator.base_url, "gpt-4", "gpt-4o", timeout_s=5),
            *models_at(simulator.base_url, "ft-1", timeout_s=5, max_rpm=600),  # 10 a second
        ],
        routes=[
            route_config(
                "gpt-4",
                {"model": "gpt-4o", "max_concurrency": 2},
                {"model": "ft-1", "max_concurrency": 100},
            )
        ],
        topics={"requests": requests, "shadow": shadow},
        shadow={"batch_size": 500, "pace_window_s": 0},
    )
    produce(kafka, requests, _requests(30), key_field="request_id")
    role = ShadowRole(settings, kafka)
    starts = record_starts(monkeypatch)
    limit, _ = role._limits["ft-1"]
    assert limit is not None
    asked: list[float] = []
    reserve = limit.reserve
    monkeypatch.setattr(
        limit, "reserve", lambda now, units=1.0: asked.append(now) or reserve(now, units)
    )
    run_until(role, lambda: role.counters.results >= 60)
    assert role.counters.peak_in_flight["gpt-4o"] <= 2  # never the burst of 30
    assert role.counters.peak_in_flight["ft-1"] > 2  # its own limit is the endpoint's rate
    # 30 calls at 10 a second, one second's worth at once: the last starts 2 s after the first
    # reservation at the earliest, however fast or slow the machine
    ft_1 = [at for (_, model), at in starts.items() if model == "ft-1"]
    assert len(ft_1) == 30
    assert max(ft_1) >= min(asked) + 2.0 - 1e-6
    assert role.counters.paced_s > 0


def test_live_traffic_is_replayed_at_the_pace_it_arrived(
    simulator: Simulator,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    requests, shadow = topic_factory("req", 1), topic_factory("shadow", 1)
    settings = _settings(simulator, tmp_path, requests, shadow, [{"model": "gpt-4o"}])
    for event in _requests(4):  # produced 0.4 s apart, read in one batch
        produce(kafka, requests, [event], key_field="request_id")
        time.sleep(0.4)  # the traffic's pace (what is checked is the replay's)
    role = ShadowRole(settings, kafka)
    starts = record_starts(monkeypatch)
    due: dict[str, float] = {}  # request_id → when its replay may start at the earliest

    def offsets(batch: list[Any], now_s: float, window_s: float) -> list[float]:
        planned = arrival_offsets(batch, now_s, window_s)
        at = time.monotonic()
        due.update({m.key().decode(): at + o for m, o in zip(batch, planned, strict=True)})
        return planned

    monkeypatch.setattr("processors.shadow.arrival_offsets", offsets)
    run_until(role, lambda: role.counters.results >= 4)
    # the requests were produced 0.4 s apart: their replays are spread the same way, none
    # before its request's offset (a lower bound: a slow machine only starts them later)
    assert max(due.values()) - min(due.values()) >= 1.1
    assert all(at >= due[request_id] - 1e-3 for (request_id, _), at in starts.items())


TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def test_a_candidate_that_calls_a_tool_is_recorded_with_its_call(tmp_path: Path) -> None:
    # streamed as deltas: the call's name, then its arguments in two pieces
    caller = {"name": "caller", "latency_median_ms": 200, "latency_p95_ms": 300,
              "tool_call_rate": 1.0}  # fmt: skip
    with simulated_models([caller], seed=1, time_scale=0.05) as sim:
        settings = make_settings(tmp_path, models=models_at(sim.base_url, "caller", timeout_s=5))
        event = sample_request(request={"messages": MESSAGES, "tools": TOOLS})
        result = replay_once(settings, "caller", event)
    assert result is not None
    assert (result.status, result.answer) == ("ok", "")
    assert result.ttft_ms is not None  # the first delta was a tool call, not text
    assert result.tool_calls is not None
    [tool_call] = result.tool_calls
    assert tool_call["function"]["name"] == "lookup"
    assert json.loads(tool_call["function"]["arguments"]) == {
        "question": "How long is the warranty?"
    }
    assert ShadowResult.from_json(result.to_json()) == result
