"""The Responses-API counterpart of ``track_request``: ``client.responses.create``.

::

    with track_response(router, events, prices, route="support-answer", key=user_id,
                        instructions=system_prompt, input=question, tools=tools) as call:
        response = call.create(client)           # or: for text in call.stream(client): ...
    answer = response.output_text

It takes every parameter the installed SDK's ``responses.create`` takes (from its
``ResponseCreateParamsBase``) and records the request in chat form, which is what the shadow
replays to the candidates (chat-completions endpoints) and what the judge and the analysts
read: ``instructions`` becomes the first system message; input messages keep their roles and
their text and image parts; a ``function_call`` item becomes an assistant message with
``tool_calls`` and a ``function_call_output`` a ``tool`` message; ``max_output_tokens`` is
``max_completion_tokens``, ``text.format`` is ``response_format``, ``reasoning.effort`` is
``reasoning_effort``; function tools and ``tool_choice`` take their chat shape. The request
records ``api: "responses"`` and, in ``responses_params``, the parameters with no chat
equivalent as sent (``truncation``, ``include``…): kept, never replayed. Reasoning items are
the model's own state and are left out of the chat form.

A request that has no faithful chat form (built-in tools such as ``web_search``, state on the
server: ``previous_response_id``, ``conversation``, ``prompt``; input items other than
messages and function calls) is still recorded, with ``replayable`` false: the shadow skips
it rather than replay something else.
"""

from __future__ import annotations

import functools
import logging
import typing
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from producers.emitter import EventProducer
from producers.router import Router
from producers.tracking import CallRecord, EventContext, Price, recorded_request
from shadowlab.core.openai_shapes import message_as_sent, plain_json

if TYPE_CHECKING:
    import openai
    from openai.types.responses import Response, ResponseStreamEvent

log = logging.getLogger(__name__)

#: Parameters ``track_response`` passes itself, never from the caller.
_OWN = frozenset({"model", "stream", "stream_options"})
#: Responses parameters whose chat parameter has the same name and meaning.
_SAME_NAME = frozenset({
    "temperature", "top_p", "parallel_tool_calls", "metadata", "user", "store",
    "service_tier", "prompt_cache_key", "safety_identifier", "prompt_cache_retention",
})  # fmt: skip
#: Server-side state: the request means something else without it.
_STATEFUL = frozenset({"previous_response_id", "conversation", "prompt"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})


@functools.cache
def responses_parameters() -> frozenset[str]:
    """The keyword parameters of ``responses.create`` besides the model and streaming."""
    from openai.types.responses import response_create_params  # noqa: PLC0415 - lazy

    return frozenset(
        set(typing.get_type_hints(response_create_params.ResponseCreateParamsBase)) - _OWN
    )


class NoChatForm(ValueError):  # noqa: N818 - a reason, not a failure of the caller
    """A Responses request that the chat API cannot express (the event is not replayable)."""


def _part(part: Mapping[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind in _TEXT_PARTS:
        return {"type": "text", "text": part.get("text", "")}
    if kind == "input_image" and part.get("image_url"):
        image = {
            "url": part["image_url"],
            **({"detail": part["detail"]} if "detail" in part else {}),
        }
        return {"type": "image_url", "image_url": image}
    raise NoChatForm(f"a content part of type {kind!r}")


def _content(role: str, content: Any) -> Any:
    if isinstance(content, str) or content is None:
        return content
    parts = [_part(p) for p in content]
    if role in ("assistant", "system", "developer"):  # text only in chat: join it
        if any(p["type"] != "text" for p in parts):
            raise NoChatForm(f"a non-text part in a {role} message")
        return "".join(p["text"] for p in parts)
    return parts


def _append_call(messages: list[dict[str, Any]], item: Mapping[str, Any]) -> None:
    call = {"id": item.get("call_id") or item.get("id"), "type": "function",
            "function": {"name": item["name"], "arguments": item.get("arguments", "")}}  # fmt: skip
    last = messages[-1] if messages else None
    if last is not None and last.get("role") == "assistant" and "tool_calls" in last:
        last["tool_calls"].append(call)  # consecutive calls: one assistant message
    else:
        messages.append({"role": "assistant", "tool_calls": [call]})


def chat_messages(input_: Any, instructions: Any) -> list[dict[str, Any]]:
    """The Responses ``input`` and ``instructions`` as chat messages.

    Raises:
        NoChatForm: an item the chat API cannot express.
    """
    messages: list[dict[str, Any]] = []
    if instructions:
        if not isinstance(instructions, str):
            raise NoChatForm("instructions given as input items")
        messages.append({"role": "system", "content": instructions})
    items = [{"role": "user", "content": input_}] if isinstance(input_, str) else input_ or []
    for item in plain_json(items):
        kind = item.get("type", "message")
        if kind == "message":
            role = str(item.get("role"))
            messages.append({"role": role, "content": _content(role, item.get("content"))})
        elif kind == "function_call":
            _append_call(messages, item)
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _content("tool", output)
            messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
        elif kind != "reasoning":
            raise NoChatForm(f"an input item of type {kind!r}")
    return [message_as_sent(m) for m in messages]


def _tool(tool: Mapping[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise NoChatForm(f"a built-in tool ({tool.get('type')!r})")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice["name"]}}
    raise NoChatForm(f"a tool_choice of type {choice.get('type')!r}")


def _response_format(text: Mapping[str, Any]) -> dict[str, Any] | None:
    form = text.get("format")
    if not form or form.get("type") == "text":
        return None
    if form.get("type") == "json_schema":
        spec = {k: form[k] for k in ("name", "description", "schema", "strict") if k in form}
        return {"type": "json_schema", "json_schema": spec}
    return dict(form)  # json_object


def chat_parameters_of(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split Responses parameters into their chat form and the ones with no chat equivalent.

    Raises:
        NoChatForm: a parameter whose meaning the chat API cannot carry.
    """
    chat: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for name, value in plain_json(dict(params)).items():
        if name in _STATEFUL:
            raise NoChatForm(f"{name} (state kept by the server)")
        if name in _SAME_NAME:
            chat[name] = value
        elif name == "max_output_tokens":
            chat["max_completion_tokens"] = value
        elif name == "tools":
            chat["tools"] = [_tool(t) for t in value]
        elif name == "tool_choice":
            chat["tool_choice"] = _tool_choice(value)
        elif name == "text":
            _text_parameters(value, chat)
        elif name == "reasoning" and value.get("effort"):
            chat["reasoning_effort"] = value["effort"]
        elif name == "top_logprobs":
            chat.update(logprobs=True, top_logprobs=value)
        else:
            rest[name] = value
    return chat, rest


def _text_parameters(text: Mapping[str, Any], chat: dict[str, Any]) -> None:
    response_format = _response_format(text)
    if response_format is not None:
        chat["response_format"] = response_format
    if text.get("verbosity"):
        chat["verbosity"] = text["verbosity"]


def responses_request(
    input_: Any, instructions: Any, params: Mapping[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The event's ``request`` for a Responses call, and why it cannot be replayed (if so)."""
    try:
        messages = chat_messages(input_, instructions)
        chat, rest = chat_parameters_of(params)
    except NoChatForm as why:
        kept = {"input": input_, "instructions": instructions, **params}
        raw = {k: plain_json(v) for k, v in kept.items() if v is not None}
        placeholder = [{"role": "user", "content": _text_of(input_)}]
        return {"messages": placeholder, "api": "responses", "responses_params": raw}, str(why)
    request = recorded_request(messages, chat)
    return {**request, "api": "responses", **({"responses_params": rest} if rest else {})}, None


def _text_of(input_: Any) -> str:
    """The input's text when it is a string, else a note that it is kept raw."""
    return input_ if isinstance(input_, str) else "(kept in responses_params.input)"


@dataclass(kw_only=True)
class TrackedResponse(CallRecord):
    """One routed Responses call; fill it through :meth:`create` or :meth:`stream`."""

    params: dict[str, Any]

    def create(self, client: openai.OpenAI) -> Response:
        """Call the chosen model (no streaming) and record the answer, tool calls and usage."""
        responses: Any = client.responses
        response: Response = responses.create(model=self.model, **self.params)
        self._record(response)
        return response

    def stream(self, client: openai.OpenAI) -> Iterator[str]:
        """Call with streaming; yields text pieces, records TTFT, the answer and usage."""
        responses: Any = client.responses
        events: Iterator[ResponseStreamEvent] = responses.create(
            model=self.model, stream=True, **self.params
        )
        for event in events:
            if event.type == "response.output_text.delta":
                self.first_output()
                yield event.delta
            elif event.type == "response.output_item.added" and event.item.type == "function_call":
                self.first_output()
            elif event.type in ("response.completed", "response.incomplete", "response.failed"):
                self._record(event.response)
        if self.answer is None:
            self.answer = ""

    def _record(self, response: Response) -> None:
        self.answer = response.output_text
        calls = [
            {"id": item.call_id, "type": "function",
             "function": {"name": item.name, "arguments": item.arguments}}
            for item in response.output if item.type == "function_call"
        ]  # fmt: skip
        self.tool_calls = calls or None
        if response.usage is not None:
            self.prompt_tokens = response.usage.input_tokens
            self.completion_tokens = response.usage.output_tokens


@contextmanager
def track_response(
    router: Router,
    events: EventProducer,
    prices: Mapping[str, Price],
    *,
    route: str,
    key: str | None,
    context_documents: Sequence[Mapping[str, Any]] = (),
    session_id: str | None = None,
    tenant: str | None = None,
    replayable: bool = True,
    request_id: str | None = None,
    **params: Any,
) -> Iterator[TrackedResponse]:
    """Route one Responses-API request, let the caller make it, then emit its RequestEvent.

    The arguments are those of :func:`producers.track_request`, with the Responses
    parameters (``input``, ``instructions``, ``tools``, ``text``, ``max_output_tokens``…) in
    place of ``messages`` and the chat parameters.

    Raises:
        TypeError: a parameter ``responses.create`` does not take (before any call).
    """
    accepted = responses_parameters()
    unknown = set(params) - accepted
    if unknown:
        raise TypeError(
            f"track_response got parameters responses.create does not take: "
            f"{sorted(unknown)}; it takes {sorted(accepted)}"
        )
    others = {k: v for k, v in params.items() if k not in ("input", "instructions")}
    request, not_replayable = responses_request(
        params.get("input"), params.get("instructions"), others
    )
    if not_replayable is not None:
        log.info("a %s Responses request is recorded but not replayable: %s", route, not_replayable)
    call = TrackedResponse(assignment=router.choose(route, key), params=dict(params))
    record = EventContext(events=events, prices=prices, route=route, key=key, request=request,
                          context_documents=context_documents, session_id=session_id,
                          tenant=tenant, replayable=replayable and not_replayable is None,
                          request_id=request_id)  # fmt: skip
    with record.emitted_after(call):
        yield call
