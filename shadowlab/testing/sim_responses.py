"""The simulator's ``/v1/responses``: the Responses API over the same simulated models.

A request is read in its chat form (:func:`producers.responses.chat_messages`, the form
``track_response`` records), so a model gives the same answer, tool call and fate to a
Responses request as to the chat completion the shadow replays. Non-streamed, the body is a
``response`` object (a ``message`` item with ``output_text``, or a ``function_call`` item);
streamed, the events are ``response.created``, ``response.output_item.added``, the
``response.output_text.delta`` (or ``response.function_call_arguments.delta``) pieces and
``response.completed`` with the whole response.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from producers.responses import NoChatForm, chat_messages, chat_parameters_of

if TYPE_CHECKING:
    from shadowlab.testing.model_server import Outcome


def chat_body(body: dict[str, Any]) -> dict[str, Any]:
    """The chat form of a Responses body (what the simulated models decide on).

    Raises:
        NoChatForm: the body has something the simulator cannot answer.
    """
    messages = chat_messages(body.get("input"), body.get("instructions"))
    params = {k: v for k, v in body.items() if k not in ("input", "instructions", "model")}
    params.pop("stream", None)
    chat, _rest = chat_parameters_of(params)
    return {"messages": messages, **chat}


def _output_item(outcome: Outcome, number: int) -> dict[str, Any]:
    if outcome.tool_call is not None:
        name, arguments = outcome.tool_call
        return {"type": "function_call", "id": f"fc_sim_{number}", "call_id": f"call_sim_{number}",
                "name": name, "arguments": arguments, "status": "completed"}  # fmt: skip
    text = {"type": "output_text", "text": outcome.answer, "annotations": []}
    return {"type": "message", "id": f"msg_sim_{number}", "role": "assistant",
            "status": "completed", "content": [text]}  # fmt: skip


def response_body(
    body: dict[str, Any], outcome: Outcome, number: int, *, usage: bool
) -> dict[str, Any]:
    """The ``response`` object of a finished call."""
    tokens = {
        "input_tokens": outcome.prompt_tokens,
        "output_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    return {
        "id": f"resp_sim_{number}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model"),
        "output": [_output_item(outcome, number)],
        "parallel_tool_calls": True,
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "usage": tokens if usage else None,
    }


async def stream_events(
    response: web.StreamResponse,
    final: dict[str, Any],
    outcome: Outcome,
    *,
    ttft_s: float,
    rest_s: float,
) -> web.StreamResponse:
    """Write a Responses stream: created, the item, its pieces, completed."""
    item = final["output"][0]
    pieces: list[dict[str, Any]]
    if item["type"] == "function_call":
        half = len(item["arguments"]) // 2
        pieces = [{"type": "response.function_call_arguments.delta", "item_id": item["id"],
                   "output_index": 0, "delta": part}
                  for part in (item["arguments"][:half], item["arguments"][half:])]  # fmt: skip
    else:
        words = outcome.answer.split(" ")
        pieces = [{"type": "response.output_text.delta", "item_id": item["id"], "output_index": 0,
                   "content_index": 0, "delta": w if i == 0 else f" {w}", "logprobs": []}
                  for i, w in enumerate(words)]  # fmt: skip
    started = {**final, "status": "in_progress", "output": [], "usage": None}
    added = {**item, "status": "in_progress"}
    if added["type"] == "message":
        added["content"] = []
    else:
        added["arguments"] = ""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": added},
        *pieces,
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {"type": "response.completed", "response": final},
    ]
    await asyncio.sleep(ttft_s)
    for number, event in enumerate(events):
        if event["type"] == "response.output_item.done":
            await asyncio.sleep(rest_s)
        data = json.dumps({**event, "sequence_number": number})
        await response.write(f"event: {event['type']}\ndata: {data}\n\n".encode())
    await response.write_eof()
    return response


__all__ = ["NoChatForm", "chat_body", "response_body", "stream_events"]
