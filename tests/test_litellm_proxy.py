"""Against a server we did not write: the LiteLLM proxy as a candidate endpoint.

The shadow role replays through the real ``openai`` client to the proxy: its mock answers,
429s (without ``Retry-After``) and 500s, a slow answer past the deadline, and tool calls. The
proxy's ``UPSTREAM`` models forward to the simulator, as the proxy forwards to a provider:
streamed tool-call deltas, a 429 whose ``Retry-After`` the proxy renames, a server that
reports no usage, and the Responses API, each recorded as it happened.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from processors.evaluation.golden import GoldenItem
from processors.shadow import ShadowRole
from producers import EventProducer, Router, set_flags, track_request, track_response
from schemas import RequestEvent, ShadowResult
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    build_config,
    make_settings,
    produce,
    read_events,
    replay_once,
    route_config,
    run_until,
    sample_request,
    simulated_models,
    write_config,
)
from shadowlab.testing.litellm_proxy import MODELS, LiteLLMProxy, litellm_proxy, upstream_models

pytestmark = pytest.mark.timeout(600)  # the first run installs the proxy (about 90 s)
MESSAGES = [
    {"role": "system", "content": "The warranty lasts two years."},
    {"role": "user", "content": "How long is the warranty?"},
]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


#: Simulated models behind the proxy: it forwards ``<name>`` to the simulator's ``<name>``.
UPSTREAM = [
    {"name": "caller", "latency_median_ms": 100, "latency_p95_ms": 150, "tool_call_rate": 1},
    {"name": "limited", "rate_limit_rate": 1, "retry_after_s": 60},
    {"name": "quiet", "latency_median_ms": 100, "latency_p95_ms": 150, "reports_usage": False},
    {"name": "plain", "latency_median_ms": 100, "latency_p95_ms": 150, "p_correct": 1},
]


@pytest.fixture(scope="module")
def proxy() -> Iterator[LiteLLMProxy]:
    names = [str(m["name"]) for m in UPSTREAM]
    with (
        simulated_models(UPSTREAM, seed=1, time_scale=0.2) as simulator,
        litellm_proxy(upstream=upstream_models(simulator.base_url, names)) as running,
    ):
        yield running


def _settings(proxy: LiteLLMProxy, tmp_path: Path, **shadow: Any) -> Settings:
    names = ("gpt-4", *MODELS, *(m["name"] for m in UPSTREAM))
    models = [
        {"name": name, "base_url": proxy.base_url, "api_key_env": "LITELLM_TEST_KEY",
         "timeout_s": 1.5 if name == "mock-slow" else 10}
        for name in names
    ]  # fmt: skip
    return make_settings(
        tmp_path, models=models, routes=[route_config("gpt-4", "mock-ok", "mock-tools")],
        shadow={"backoff_base_s": 0.01, "max_attempts": 2, **shadow},
    )  # fmt: skip


def _replay(
    proxy: LiteLLMProxy, tmp_path: Path, model: str, shadow: dict[str, Any] | None = None,
    **request: Any,
) -> ShadowResult | None:  # fmt: skip
    settings = _settings(proxy, tmp_path, **(shadow or {}))
    event = sample_request(request={"messages": MESSAGES, **request})
    return replay_once(settings, model, event)


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch, proxy: LiteLLMProxy) -> None:
    monkeypatch.setenv("LITELLM_TEST_KEY", proxy.api_key)


def test_an_answer_is_recorded_with_its_stream_timings_and_usage(
    proxy: LiteLLMProxy, tmp_path: Path
) -> None:
    result = _replay(proxy, tmp_path, "mock-ok", temperature=0.2, stop="END", seed=7)
    assert result is not None
    assert (result.status, result.answer) == ("ok", "The warranty lasts two years.")
    assert result.ttft_ms is not None
    assert (result.prompt_tokens or 0) > 0
    assert (result.completion_tokens or 0) > 0


def test_its_429_is_rate_limiting_and_its_500_a_model_error(
    proxy: LiteLLMProxy, tmp_path: Path
) -> None:
    assert _replay(proxy, tmp_path, "mock-429") is None  # counted as rate_limited, not an error
    failed = _replay(proxy, tmp_path, "mock-500")
    assert failed is not None
    assert (failed.status, failed.error_type, failed.attempts) == (
        "error", "InternalServerError", 2,
    )  # fmt: skip


def test_a_retry_after_passed_on_by_the_proxy_is_honoured_and_its_absence_backs_off(
    proxy: LiteLLMProxy, tmp_path: Path
) -> None:
    shadow = {"rate_limit_is_error": True, "max_attempts": 3, "max_retry_after_s": 30}
    # upstream asks for 60 s, longer than we wait: no retry (LiteLLM sends it on as
    # ``llm_provider-retry-after``, with no ``retry-after`` of its own)
    asked = _replay(proxy, tmp_path, "limited", shadow)
    assert asked is not None
    assert (asked.status, asked.error_type, asked.attempts) == ("error", "RateLimitError", 1)
    # LiteLLM's own 429 names no wait: exponential backoff, every attempt used
    unasked = _replay(proxy, tmp_path, "mock-429", shadow)
    assert unasked is not None
    assert (unasked.error_type, unasked.attempts) == ("RateLimitError", 3)


def test_streamed_tool_calls_through_the_proxy_are_recorded(
    proxy: LiteLLMProxy, tmp_path: Path
) -> None:
    result = _replay(proxy, tmp_path, "caller", tools=TOOLS)
    assert result is not None
    assert result.status == "ok"
    assert result.tool_calls is not None
    [call] = result.tool_calls
    question = MESSAGES[-1]["content"]
    assert call["function"] == {"name": "lookup", "arguments": json.dumps({"question": question})}
    assert result.ttft_ms is not None  # the first delta was the call


def test_the_proxys_zeros_for_a_usage_it_never_got_are_unknown_usage(
    proxy: LiteLLMProxy, kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    with (
        EventProducer(kafka, tmp_path / "j", requests_topic=topic_factory("req")) as events,
        openai.OpenAI(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0) as client,
    ):
        with track_request(_router("quiet"), events, {}, route="faq", key="u",
                           messages=MESSAGES) as call:  # fmt: skip
            completion = call.create(client)
        assert events.flush(10)
        [event] = read_events(kafka, events.requests_topic, RequestEvent, count=1)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 0  # what the proxy says when upstream sent none
    assert event.answer
    assert (event.usage_known, event.prompt_tokens, event.cost_usd) == (False, None, None)


def test_a_responses_api_call_through_the_proxy_is_recorded(
    proxy: LiteLLMProxy, kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    context, question = MESSAGES[0]["content"], MESSAGES[1]["content"]
    with (
        EventProducer(kafka, tmp_path / "j", requests_topic=topic_factory("req")) as events,
        openai.OpenAI(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0) as client,
    ):
        for model in ("mock-ok", "plain"):
            with track_response(_router(model), events, {}, route="faq", key="u",
                                instructions=context, input=question) as call:  # fmt: skip
                response = call.create(client)
            assert response.output_text == context
        with track_response(_router("plain"), events, {}, route="faq", key="u",
                            instructions=context, input=question) as streamed:  # fmt: skip
            text = "".join(streamed.stream(client))
        assert events.flush(10)
        recorded = read_events(kafka, events.requests_topic, RequestEvent, count=3)
    assert text == context
    assert [(e.model, e.answer, e.request.api) for e in recorded] == [
        ("mock-ok", context, "responses"), ("plain", context, "responses"),
        ("plain", context, "responses"),
    ]  # fmt: skip
    assert all(e.usage_known and (e.prompt_tokens or 0) > 0 for e in recorded)
    assert recorded[2].ttft_ms is not None
    assert [m.role for m in recorded[0].request.messages] == ["system", "user"]


def _router(primary: str) -> Router:
    flags = set_flags(None, route="faq", primary=primary, canary=None, canary_weight_bp=0,
                      actor="t", reason="", now=dt.datetime.now(dt.UTC))  # fmt: skip
    return Router([flags])


def test_a_slow_answer_past_the_deadline_is_a_timeout(proxy: LiteLLMProxy, tmp_path: Path) -> None:
    result = _replay(proxy, tmp_path, "mock-slow")
    assert result is not None
    assert result.status == "timeout"
    assert result.latency_ms == pytest.approx(1500, abs=1)


def test_its_tool_calls_are_recorded_by_track_request(
    proxy: LiteLLMProxy, kafka: dict[str, str], topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    # (LiteLLM's mock mode streams a mock's text but not its tool calls; streamed tool-call
    # deltas are checked against the simulator in tests/processors/test_shadow.py)
    router = _router("mock-tools")
    journal = tmp_path / "journal"
    with (
        EventProducer(kafka, journal, requests_topic=topic_factory("req")) as events,
        openai.OpenAI(base_url=proxy.base_url, api_key=proxy.api_key, max_retries=0) as client,
    ):
        with track_request(router, events, {}, route="faq", key="Jane Doe", messages=MESSAGES,
                           tools=TOOLS, max_completion_tokens=50) as call:  # fmt: skip
            completion = call.create(client)
        assert events.flush(10)
        [event] = read_events(kafka, events.requests_topic, RequestEvent, count=1)
    assert completion.choices[0].message.tool_calls
    assert event.tool_calls is not None
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in event.tool_calls] == [
        ("lookup", '{"question": "warranty"}')
    ]
    assert event.user_key == "Jane Doe"
    assert event.request.max_completion_tokens == 50


def test_the_shadow_role_replays_a_route_to_the_proxy(
    proxy: LiteLLMProxy,
    kafka: dict[str, str],
    topic_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    settings = _settings(proxy, tmp_path)
    requests, shadow = topic_factory("req", 2), topic_factory("shadow", 2)
    settings = settings.model_copy(
        update={
            "topics": settings.topics.model_copy(update={"requests": requests, "shadow": shadow})
        }
    )
    events = [sample_request(request_id=f"lite-{i}", request={"messages": MESSAGES, "tools": TOOLS})
              for i in range(5)]  # fmt: skip
    produce(kafka, requests, events, key_field="request_id")
    role = ShadowRole(settings, kafka)
    run_until(role, lambda: role.counters.results >= 10, timeout_s=120)
    results = read_events(kafka, shadow, ShadowResult, count=10)
    by_model = {(r.request_id, r.candidate): r for r in results}
    assert set(by_model) == {(e.request_id, m) for e in events for m in ("mock-ok", "mock-tools")}
    assert all(r.status == "ok" and r.answer and r.ttft_ms is not None for r in results)


def test_the_offline_evaluation_runs_against_the_proxy(proxy: LiteLLMProxy, tmp_path: Path) -> None:
    models = [{"name": name, "base_url": proxy.base_url, "api_key_env": "LITELLM_TEST_KEY"}
              for name in ("mock-ok", "mock-500")]  # fmt: skip
    config = write_config(tmp_path / "shadowlab.yaml", build_config(tmp_path / "d", models=models))
    golden = tmp_path / "golden.jsonl"
    items = [GoldenItem(id=f"g{i}", question=f"How long is the warranty? ({i})",
                        keywords=["two years"], context=["The warranty lasts two years."])
             for i in range(30)]  # fmt: skip
    golden.write_text("".join(i.model_dump_json() + "\n" for i in items))

    def evaluate(candidate: str) -> tuple[int, dict[str, Any]]:
        out = tmp_path / f"{candidate}.json"
        done = subprocess.run(
            [sys.executable, "-m", "shadowlab", "eval", "--golden", str(golden), "--current",
             "mock-ok", "--candidate", candidate, "--no-store", "--json", str(out),
             "--config", str(config)],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "LITELLM_TEST_KEY": proxy.api_key},
        )  # fmt: skip
        assert out.exists(), done.stdout + done.stderr
        return done.returncode, json.loads(out.read_text())

    same, report = evaluate("mock-ok")
    assert same == 0  # the gate passes
    assert report["models"]["candidate"]["accuracy"] == 1.0
    failing, report = evaluate("mock-500")
    assert failing == 1  # every candidate call failed: the accuracy gate fails
    assert report["models"]["candidate"]["error_rate"] == 1.0
