"""What the installed ``openai`` SDK accepts and returns for a chat completion, by its types.

``track_request`` takes every parameter ``client.chat.completions.create`` takes (the set is
derived from ``CompletionCreateParamsBase``, not kept by hand, so a new SDK's parameters are
accepted the day it is installed) and records each message as the SDK sends it: an SDK object
(the assistant message of a tool loop, ``completion.choices[0].message``) is dumped without
its unset fields, and only the keys the SDK's input type for that role has are kept (a
response's ``annotations`` are not part of a request). The SDK is imported lazily: importing
``producers`` does not load it. :func:`stream_answer` reads a finished stream's answer and
tool calls through the SDK's own accumulator, for the service helper and the shadow alike.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from openai.lib.streaming.chat import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionMessage

#: Parameters ``track_request`` passes itself, never from the caller.
_OWN = frozenset({"messages", "model", "stream", "stream_options"})


@functools.cache
def chat_parameters() -> frozenset[str]:
    """The keyword parameters of ``chat.completions.create`` besides messages and model."""
    from openai.types.chat import completion_create_params  # noqa: PLC0415 - lazy on purpose

    keys = set(typing.get_type_hints(completion_create_params.CompletionCreateParamsBase))
    return frozenset(keys - _OWN)


@functools.cache
def message_keys() -> Mapping[str, frozenset[str]]:
    """For each message role, the keys of the SDK's input type for it."""
    from openai.types.chat import chat_completion_message_param  # noqa: PLC0415

    out: dict[str, frozenset[str]] = {}
    for shape in typing.get_args(chat_completion_message_param.ChatCompletionMessageParam):
        hints = typing.get_type_hints(shape)
        for role in typing.get_args(hints["role"]):
            out[role] = frozenset(hints)
    return out


def plain_json(value: Any) -> Any:
    """``value`` with SDK objects (pydantic models) dumped as the SDK sends them."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return plain_json(dump(exclude_none=True, mode="json"))
    if isinstance(value, Mapping):
        return {str(k): plain_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [plain_json(v) for v in value]
    return value


def message_as_sent(message: Any) -> dict[str, Any]:
    """One chat message as a plain dict with the keys its role's SDK input type has.

    A dict or an SDK object; ``None`` fields are dropped (the SDK does not send them), and so
    are response-only keys (``annotations``). An unknown role is kept whole: the schema
    says what is wrong with it.
    """
    plain = plain_json(message)
    if not isinstance(plain, dict):
        raise TypeError(f"a chat message must be a mapping or an SDK message, not {message!r}")
    keys = message_keys().get(str(plain.get("role")))
    return plain if keys is None else {k: v for k, v in plain.items() if k in keys}


def answer_of(message: ChatCompletionMessage | None) -> tuple[str | None, list[Any] | None]:
    """A completion message's text and its tool calls as the SDK gives them (``None``: none)."""
    if message is None:
        return None, None
    return message.content, plain_json(message.tool_calls) or None


def stream_answer(state: ChatCompletionStreamState[Any]) -> tuple[str, list[Any] | None]:
    """The text (``""`` for none) and tool calls a finished stream accumulated in ``state``."""
    try:
        completion = state.get_final_completion()
    except (AssertionError, RuntimeError, ValueError):  # a stream that sent no choice at all
        return "", None
    text, calls = answer_of(completion.choices[0].message if completion.choices else None)
    return text or "", calls


def usage_fields(
    prompt_tokens: int | None,
    completion_tokens: int | None,
    cost: Callable[[int, int], float] | None,
    *,
    came_back: bool,
) -> dict[str, Any]:
    """A call's usage fields: as reported, else unknown (null) for a call that came back.

    A call that failed before anything came back is recorded as 0 tokens and $0 (nothing to
    pay); one that answered without a usage report is unknown (``usage_known`` false), never
    0. So is one reporting 0 prompt tokens: no request has none, and gateways fill a usage
    they did not get with zeros (the LiteLLM proxy does). ``cost`` prices the tokens
    (``None``: the model has no price, $0).
    """
    if came_back and prompt_tokens == 0:
        prompt_tokens = None
    if prompt_tokens is None or completion_tokens is None:
        if came_back:
            return {"prompt_tokens": None, "completion_tokens": None, "cost_usd": None,
                    "usage_known": False}  # fmt: skip
        prompt_tokens = completion_tokens = 0
    usd = cost(prompt_tokens, completion_tokens) if cost is not None else 0.0
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "cost_usd": usd, "usage_known": True}  # fmt: skip
