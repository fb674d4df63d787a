"""The Responses-API helper: its chat form, and Router → openai → simulator → RequestEvent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from processors.shadow import sent_parameters
from producers import EventProducer, Price, Router, set_flags, track_response
from producers.responses import chat_messages, chat_parameters_of, responses_request
from schemas import RequestEvent
from shadowlab.testing import (
    emitted_requests,
    make_settings,
    models_at,
    replay_once,
    simulated_models,
)
from shadowlab.testing.model_server import Simulator

CONTEXT = "The warranty lasts two years."
QUESTION = "How long is the warranty?"
TOOLS = [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]
CHAT_TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
]
PRICES = {"gpt-4o": Price(0.0025, 0.01)}


def test_a_tool_loop_in_responses_items_is_the_same_loop_in_chat_messages() -> None:
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": QUESTION},
                                     {"type": "input_image", "image_url": "https://x/y.png"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": '{"q": 1}'},
        {"type": "function_call", "call_id": "c2", "name": "lookup", "arguments": '{"q": 2}'},
        {"type": "function_call_output", "call_id": "c1", "output": "two years"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "Two ", "annotations": []},
                     {"type": "output_text", "text": "years.", "annotations": []}]},
    ]  # fmt: skip
    messages = chat_messages(items, CONTEXT)
    assert messages == [
        {"role": "system", "content": CONTEXT},
        {"role": "user", "content": [{"type": "text", "text": QUESTION},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
        {"role": "assistant", "tool_calls": [_call("c1", '{"q": 1}'), _call("c2", '{"q": 2}')]},
        {"role": "tool", "tool_call_id": "c1", "content": "two years"},
        {"role": "assistant", "content": "Two years."},
    ]  # fmt: skip


def _call(call_id: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": "lookup", "arguments": arguments}}  # fmt: skip


def test_responses_parameters_take_their_chat_names_and_the_rest_is_kept_apart() -> None:
    schema = {"type": "object", "properties": {"days": {"type": "integer"}}}
    chat, rest = chat_parameters_of({
        "max_output_tokens": 50, "temperature": 0.2, "tools": TOOLS,
        "tool_choice": {"type": "function", "name": "lookup"},
        "text": {"format": {"type": "json_schema", "name": "a", "schema": schema, "strict": True},
                 "verbosity": "low"},
        "reasoning": {"effort": "low"}, "top_logprobs": 2, "truncation": "auto",
        "include": ["reasoning.encrypted_content"],
    })  # fmt: skip
    assert chat == {
        "max_completion_tokens": 50, "temperature": 0.2, "tools": CHAT_TOOLS,
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "a", "schema": schema, "strict": True}},
        "verbosity": "low", "reasoning_effort": "low", "logprobs": True, "top_logprobs": 2,
    }  # fmt: skip
    assert rest == {"truncation": "auto", "include": ["reasoning.encrypted_content"]}


@pytest.mark.parametrize(
    ("params", "why"),
    [
        ({"tools": [{"type": "web_search"}]}, "built-in tool ('web_search')"),
        ({"previous_response_id": "resp_1"}, "previous_response_id (state kept by the server)"),
        ({"input": [{"type": "item_reference", "id": "x"}]}, "input item of type 'item_reference'"),
    ],
)
def test_a_request_with_no_chat_form_is_kept_raw_and_says_why(
    params: dict[str, Any], why: str
) -> None:
    input_ = params.pop("input", QUESTION)
    request, reason = responses_request(input_, None, params)
    assert reason is not None
    assert why in reason
    assert request["api"] == "responses"
    assert request["responses_params"] == {"input": input_, **params}
    RequestEvent.model_validate(_event(request))  # the event can be built and stored


def _event(request: dict[str, Any]) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {"request_id": "r", "event_time": now, "route": "faq", "request": request,
            "model": "m", "arm": "primary", "latency_ms": 1, "status": "ok"}  # fmt: skip


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    profiles = [
        {"name": "gpt-4o", "latency_median_ms": 200, "latency_p95_ms": 300, "p_correct": 1},
        {"name": "caller", "latency_median_ms": 100, "latency_p95_ms": 150, "tool_call_rate": 1},
        {"name": "quiet", "latency_median_ms": 100, "latency_p95_ms": 150, "reports_usage": False},
    ]
    with simulated_models(profiles, seed=3, time_scale=0.2) as sim:
        yield sim


def _router(primary: str) -> Router:
    flags = set_flags(None, route="faq", primary=primary, canary=None, canary_weight_bp=0,
                      actor="t", reason="", now=dt.datetime.now(dt.UTC))  # fmt: skip
    return Router([flags])


def _client(simulator: Simulator) -> openai.OpenAI:
    return openai.OpenAI(base_url=simulator.base_url, api_key="sim", max_retries=0, timeout=5)


def test_a_responses_call_is_recorded_in_chat_form_and_the_shadow_replays_it(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str], tmp_path: Path
) -> None:
    with (
        _client(simulator) as client,
        track_response(_router("gpt-4o"), events, PRICES, route="faq", key="josé@example.com",
                       instructions=CONTEXT, input=QUESTION, max_output_tokens=60,
                       truncation="auto") as call,
    ):  # fmt: skip
        response = call.create(client)
    [event] = emitted_requests(kafka, events, 1)
    assert event.answer == response.output_text == CONTEXT
    assert response.usage is not None
    assert (event.prompt_tokens, event.completion_tokens) == (
        response.usage.input_tokens, response.usage.output_tokens,
    )  # fmt: skip
    assert event.cost_usd == pytest.approx(PRICES["gpt-4o"].cost(*response_tokens(response)))
    assert (event.request.api, event.request.responses_params) == (
        "responses",
        {"truncation": "auto"},
    )
    assert [(m.role, m.content) for m in event.request.messages] == [
        ("system", CONTEXT), ("user", QUESTION),
    ]  # fmt: skip
    assert event.request.max_completion_tokens == 60
    assert event.replayable
    sent = sent_parameters(event)
    assert not {"api", "responses_params"} & set(sent)
    settings = make_settings(tmp_path, models=models_at(simulator.base_url, "gpt-4o", timeout_s=5))
    result = replay_once(settings, "gpt-4o", event)
    assert result is not None
    assert (result.status, result.answer) == ("ok", event.answer)  # the same question, in chat


def response_tokens(response: Any) -> tuple[int, int]:
    return response.usage.input_tokens, response.usage.output_tokens


def test_a_streamed_responses_call_records_its_first_token_and_its_tool_calls(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str]
) -> None:
    with _client(simulator) as client:
        with track_response(_router("gpt-4o"), events, PRICES, route="faq", key="u",
                            instructions=CONTEXT, input=QUESTION) as call:  # fmt: skip
            text = "".join(call.stream(client))
        with track_response(_router("caller"), events, PRICES, route="faq", key="u",
                            input=QUESTION, tools=TOOLS) as tool_call:  # fmt: skip
            assert "".join(tool_call.stream(client)) == ""
    streamed, called = emitted_requests(kafka, events, 2)
    assert streamed.answer == text == CONTEXT
    assert streamed.ttft_ms is not None
    assert 0 < streamed.ttft_ms < streamed.latency_ms
    assert called.tool_calls is not None
    [recorded] = called.tool_calls
    assert recorded["function"] == {
        "name": "lookup",
        "arguments": '{"question": "' + QUESTION + '"}',
    }
    assert called.ttft_ms is not None
    assert called.request.tools == CHAT_TOOLS


def test_a_server_without_usage_is_unknown_usage_and_a_built_in_tool_is_not_replayed(
    simulator: Simulator, events: EventProducer, kafka: dict[str, str]
) -> None:
    with _client(simulator) as client:
        with track_response(_router("quiet"), events, PRICES, route="faq", key="u",
                            input=QUESTION) as call:  # fmt: skip
            call.create(client)
        search = [{"type": "web_search"}]
        with (
            pytest.raises(openai.BadRequestError),  # the simulator has no web search
            track_response(_router("gpt-4o"), events, PRICES, route="faq", key="u",
                           input=QUESTION, tools=search) as built_in,
        ):  # fmt: skip
            built_in.create(client)
    quiet, searched = emitted_requests(kafka, events, 2)
    assert (quiet.usage_known, quiet.prompt_tokens, quiet.cost_usd) == (False, None, None)
    assert quiet.answer
    assert (searched.replayable, searched.status, searched.error_type) == (
        False, "error", "BadRequestError",
    )  # fmt: skip
    assert searched.request.responses_params == {
        "input": QUESTION,
        "tools": [{"type": "web_search"}],
    }


def test_a_parameter_responses_create_does_not_take_is_refused(events: EventProducer) -> None:
    refused = r"does not take: \['messages'\].*max_output_tokens"
    with (
        pytest.raises(TypeError, match=refused),
        track_response(_router("gpt-4o"), events, PRICES, route="faq", key="u", messages=[]),
    ):
        pass
