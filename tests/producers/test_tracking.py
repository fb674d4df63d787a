"""The service helper: Router → real openai client → simulator over HTTP → RequestEvent."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from clickhouse_connect.driver.client import Client
from openai.types.chat import ChatCompletionMessage, ChatCompletionMessageFunctionToolCall
from openai.types.chat.chat_completion_message_function_tool_call import Function

from processors.shadow import sent_parameters
from producers import EventProducer, Price, Router, set_flags, track_request
from shadowlab.testing import (
    emitted_requests,
    make_settings,
    models_at,
    replay_once,
    simulated_models,
)
from shadowlab.testing.model_server import Simulator
from sinks.clickhouse import insert_events

CONTEXT = "The warranty lasts two years. Returns are free within 30 days."
MESSAGES = [
    {"role": "system", "content": CONTEXT},
    {"role": "user", "content": "How long is the warranty?"},
]
PRICES = {"gpt-4": Price(0.03, 0.06), "gpt-4o": Price(0.0025, 0.01)}


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    profiles = [
        {"name": "gpt-4", "latency_median_ms": 400, "latency_p95_ms": 600, "p_correct": 1},
        {"name": "gpt-4o", "latency_median_ms": 200, "latency_p95_ms": 300, "p_correct": 1},
        {"name": "broken", "error_rate": 1.0},
        {"name": "stuck", "hang_rate": 1.0, "hang_s": 30},
        {"name": "caller", "latency_median_ms": 100, "latency_p95_ms": 150, "tool_call_rate": 1},
    ]
    with simulated_models(profiles, seed=3, time_scale=0.2) as sim:
        yield sim


def _client(simulator: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=simulator.base_url, api_key="sim", max_retries=0, timeout=0.5)


def _router(primary: str, canary: str | None = None, weight: int = 0) -> Router:
    return Router(
        [
            set_flags(
                None,
                route="faq",
                primary=primary,
                canary=canary,
                canary_weight_bp=weight,
                actor="t",
                reason="",
                now=dt.datetime.now(dt.UTC),
            )
        ]
    )


def test_call_is_routed_measured_priced_and_emitted(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str]
) -> None:
    router = _router("gpt-4", "gpt-4o", weight=10_000)  # everyone in the canary
    with (
        _client(simulator) as client,
        track_request(
            router,
            events,
            PRICES,
            route="faq",
            key="user-1",
            messages=MESSAGES,
            context_documents=[{"text": CONTEXT}],
            temperature=0.2,
        ) as call,
    ):
        completion = call.create(client)
    assert call.model == "gpt-4o"
    [event] = emitted_requests(kafka, events, 1)
    assert (event.model, event.arm, event.status) == ("gpt-4o", "canary", "ok")
    assert event.answer == completion.choices[0].message.content == "The warranty lasts two years."
    assert completion.usage is not None
    assert event.prompt_tokens == completion.usage.prompt_tokens > 0
    assert event.completion_tokens == completion.usage.completion_tokens > 0
    assert event.cost_usd == pytest.approx(
        (event.prompt_tokens * 0.0025 + event.completion_tokens * 0.01) / 1000, rel=1e-12
    )
    assert event.latency_ms >= 0.2 * 200 * 0.5  # slept at least the scaled latency, roughly
    assert event.request.temperature == 0.2
    assert event.context_documents[0].text == CONTEXT
    assert event.flags_version == 1


def test_streaming_records_time_to_first_token(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str]
) -> None:
    with (
        _client(simulator) as client,
        track_request(
            _router("gpt-4"), events, PRICES, route="faq", key="u", messages=MESSAGES
        ) as call,
    ):
        text = "".join(call.stream(client))
    [event] = emitted_requests(kafka, events, 1)
    assert event.answer == text == "The warranty lasts two years."
    assert event.ttft_ms is not None
    assert 0 < event.ttft_ms < event.latency_ms
    assert event.completion_tokens > 0


def test_errors_and_timeouts_are_recorded_and_reraised(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str]
) -> None:
    client = _client(simulator)
    with (
        pytest.raises(openai.InternalServerError),
        track_request(
            _router("broken"), events, PRICES, route="faq", key="u", messages=MESSAGES
        ) as call,
    ):
        call.create(client)
    with (
        pytest.raises(openai.APITimeoutError),
        track_request(
            _router("stuck"), events, PRICES, route="faq", key="u", messages=MESSAGES
        ) as call,
    ):
        call.create(client)
    client.close()
    error, timeout = emitted_requests(kafka, events, 2)
    assert (error.status, error.error_type, error.cost_usd) == ("error", "InternalServerError", 0.0)
    assert (timeout.status, timeout.error_type) == ("timeout", "APITimeoutError")
    assert timeout.latency_ms >= 500


@pytest.mark.parametrize(
    "key",
    ["Jane Doe", "josé@example.com", "用户-7", "x" * 300],
    ids=["space", "accent", "cjk", "long"],
)
def test_any_user_key_and_a_string_stop_are_recorded_not_dropped(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str], key: str
) -> None:
    router = _router("gpt-4", "gpt-4o", weight=10_000)
    with (
        _client(simulator) as client,
        track_request(router, events, PRICES, route="faq", key=key, messages=MESSAGES,
                      session_id=key, stop="END") as call,
    ):  # fmt: skip
        call.create(client)
    [event] = emitted_requests(kafka, events, 1)
    assert event.request.stop == "END"
    stored = key if len(key) <= 256 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    assert (event.user_key, event.session_id) == (stored, stored)
    assert events.stats.emitted == 1


def test_the_tool_loop_and_every_sdk_parameter_are_recorded_and_replayed_as_sent(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str], tmp_path: Path
) -> None:
    # the usual tool loop: the assistant's SDK message appended as it came back
    assistant = ChatCompletionMessage(
        role="assistant", content=None, annotations=[], refusal=None,
        tool_calls=[ChatCompletionMessageFunctionToolCall(
            id="call_1", type="function", function=Function(name="lookup", arguments='{"q": "w"}'),
        )],
    )  # fmt: skip
    messages = [*MESSAGES, assistant, {"role": "tool", "tool_call_id": "call_1", "content": "2y"}]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with (
        _client(simulator) as client,
        track_request(_router("gpt-4"), events, PRICES, route="faq", key="u", messages=messages,
                      tools=tools, max_completion_tokens=50, n=1, presence_penalty=0.1,
                      parallel_tool_calls=False) as call,
    ):  # fmt: skip
        call.create(client)
    [event] = emitted_requests(kafka, events, 1)
    sent = event.request.messages[2]
    assert (sent.role, sent.content, sent.refusal) == ("assistant", None, None)
    function = {"name": "lookup", "arguments": '{"q": "w"}'}
    assert sent.tool_calls == [{"id": "call_1", "type": "function", "function": function}]
    assert event.request.max_completion_tokens == 50
    assert event.request.other_params == {"n": 1, "presence_penalty": 0.1,
                                          "parallel_tool_calls": False}  # fmt: skip
    # the shadow sends the same parameters again, and the candidate answers them
    replayed = sent_parameters(event)
    assert {"n", "presence_penalty", "parallel_tool_calls", "tools"} <= set(replayed)
    assert "other_params" not in replayed
    settings = make_settings(tmp_path, models=models_at(simulator.base_url, "gpt-4o", timeout_s=5))
    result = replay_once(settings, "gpt-4o", event)
    assert result is not None
    assert result.status == "ok"


def test_a_parameter_the_sdk_does_not_take_is_refused_naming_the_ones_it_does(
    events: EventProducer,
) -> None:
    with (
        pytest.raises(TypeError, match=r"not take: \['temprature'\]; it takes .*'temperature'"),
        track_request(_router("gpt-4"), events, PRICES, route="faq", key="u", messages=MESSAGES,
                      temprature=0.2),
    ):  # fmt: skip
        pass


@pytest.mark.parametrize("streamed", [False, True], ids=["create", "stream"])
def test_a_tool_call_is_recorded_and_stored(
    simulator: Simulator,
    events: EventProducer,
    kafka: dict[str, str],
    clickhouse: Client,
    ch_db: str,
    streamed: bool,
) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {}}}]
    with (
        _client(simulator) as client,
        track_request(_router("caller"), events, PRICES, route="faq", key="u",
                      messages=MESSAGES, tools=tools) as call,
    ):  # fmt: skip
        if streamed:
            assert list(call.stream(client)) == []  # no text: a tool call
        else:
            call.create(client)
    [event] = emitted_requests(kafka, events, 1)
    assert event.tool_calls is not None
    assert [c["function"]["name"] for c in event.tool_calls] == ["lookup"]
    assert json.loads(event.tool_calls[0]["function"]["arguments"]) == {
        "question": "How long is the warranty?"
    }
    insert_events(clickhouse, ch_db, [event])
    (stored,), = clickhouse.query(
        f"SELECT tool_calls FROM {ch_db}.requests FINAL WHERE request_id = {{id:String}}",
        parameters={"id": event.request_id},
    ).result_rows  # fmt: skip
    assert json.loads(stored) == event.tool_calls


def test_an_event_that_cannot_be_built_is_kept_on_disk_with_why(
    simulator: Simulator, events: EventProducer
) -> None:
    # the SDK takes the parameter, our schema bounds it (temperature is 0-2): the call goes
    # through, and the event is neither sent broken nor lost
    with (
        _client(simulator) as client,
        track_request(_router("gpt-4"), events, PRICES, route="faq", key="u", messages=MESSAGES,
                      temperature=3.0) as call,
    ):  # fmt: skip
        call.create(client)
    assert events.stats.emitted == 0
    assert events.stats.dead_lettered == 1
    [line] = events.dead_letter_path.read_text().splitlines()
    letter = json.loads(line)
    assert letter["kind"] == "RequestEvent"
    assert "temperature" in letter["reason"]
    assert letter["data"]["request"]["temperature"] == 3.0
    assert letter["data"]["answer"] == "The warranty lasts two years."
