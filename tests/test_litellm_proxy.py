"""Against a server we did not write: the LiteLLM proxy (mock mode) as a candidate endpoint.

The shadow role replays through the real ``openai`` client to the proxy: answers, its 429s
and 500s, a slow answer past the deadline, and tool calls, each recorded as it happened.
"""

from __future__ import annotations

import asyncio
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

from processors.clients import model_client
from processors.evaluation.golden import GoldenItem
from processors.shadow import ShadowRole, replay
from producers import EventProducer, Router, set_flags, track_request
from schemas import RequestEvent, ShadowResult
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    build_config,
    make_settings,
    produce,
    read_events,
    route_config,
    run_until,
    sample_request,
    write_config,
)
from shadowlab.testing.litellm_proxy import MODELS, LiteLLMProxy, litellm_proxy

pytestmark = pytest.mark.timeout(600)  # the first run installs the proxy (about 90 s)
MESSAGES = [
    {"role": "system", "content": "The warranty lasts two years."},
    {"role": "user", "content": "How long is the warranty?"},
]
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def proxy() -> Iterator[LiteLLMProxy]:
    with litellm_proxy() as running:
        yield running


def _settings(proxy: LiteLLMProxy, tmp_path: Path, **shadow: Any) -> Settings:
    models = [
        {"name": name, "base_url": proxy.base_url, "api_key_env": "LITELLM_TEST_KEY",
         "timeout_s": 1.5 if name == "mock-slow" else 10}
        for name in ("gpt-4", *MODELS)
    ]  # fmt: skip
    return make_settings(
        tmp_path, models=models, routes=[route_config("gpt-4", "mock-ok", "mock-tools")],
        shadow={"backoff_base_s": 0.01, "max_attempts": 2, **shadow},
    )  # fmt: skip


def _replay(proxy: LiteLLMProxy, tmp_path: Path, model: str, **request: Any) -> ShadowResult | None:
    settings = _settings(proxy, tmp_path)
    endpoint = settings.model(model)
    event = sample_request(request={"messages": MESSAGES, **request})

    async def call() -> ShadowResult | None:
        async with model_client(endpoint, max_retries=0) as client:
            return await replay(client, endpoint, event, settings.shadow)

    return asyncio.run(call())


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
    assert result.prompt_tokens > 0
    assert result.completion_tokens > 0


def test_its_429_is_rate_limiting_and_its_500_a_model_error(
    proxy: LiteLLMProxy, tmp_path: Path
) -> None:
    assert _replay(proxy, tmp_path, "mock-429") is None  # counted as rate_limited, not an error
    failed = _replay(proxy, tmp_path, "mock-500")
    assert failed is not None
    assert (failed.status, failed.error_type, failed.attempts) == (
        "error", "InternalServerError", 2,
    )  # fmt: skip


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
    router = Router([set_flags(None, route="faq", primary="mock-tools", canary=None,
                               canary_weight_bp=0, actor="t", reason="",
                               now=dt.datetime.now(dt.UTC))])  # fmt: skip
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
