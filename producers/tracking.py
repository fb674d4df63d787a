"""The service-side helper: route, call the model with ``openai``, measure, emit.

::

    with track_request(router, events, prices, route="support-answer", key=user_id,
                       messages=messages, context_documents=docs) as call:
        completion = call.create(client)          # or: for text in call.stream(client): ...
    answer = completion.choices[0].message.content

On exit the helper emits one :class:`RequestEvent` with the model and arm the Router chose,
latency, time to first token (streaming), tokens and cost from the price table (null, with
``usage_known`` false, when the server reported no usage), and the status:
``ok``, ``timeout`` (``openai.APITimeoutError``) or ``error`` (any other exception, whose
type becomes ``error_type``). The exception still reaches the caller; emitting never raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from producers.emitter import EventProducer
from producers.router import Assignment, Router
from schemas import ChatRequest, EventValidationError, RequestEvent
from shadowlab.core.openai_shapes import (
    answer_of,
    chat_parameters,
    message_as_sent,
    plain_json,
    stream_answer,
    usage_fields,
)

if TYPE_CHECKING:  # the service brings openai; importing producers does not load it
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    """US dollars per 1,000 input and output tokens."""

    input_per_1k: float
    output_per_1k: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Return the cost of one call."""
        return (prompt_tokens * self.input_per_1k + completion_tokens * self.output_per_1k) / 1000


@dataclass(kw_only=True)
class CallRecord:
    """What one routed call gave back, filled while the service makes it."""

    assignment: Assignment
    started: float = field(default_factory=time.perf_counter)
    answer: str | None = None
    ttft_s: float | None = None
    #: As the server reported them (``None``: it reported no usage).
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: The tools the model called, in chat form (``None``: it called none).
    tool_calls: list[dict[str, Any]] | None = None

    @property
    def model(self) -> str:
        """The model the Router chose."""
        return self.assignment.model

    def first_output(self) -> None:
        """Note the time to first token (the first call counts)."""
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.started


@dataclass(kw_only=True)
class TrackedCall(CallRecord):
    """One routed chat completion; fill it through :meth:`create` or :meth:`stream`."""

    messages: list[dict[str, Any]]
    params: dict[str, Any]

    def create(self, client: openai.OpenAI) -> ChatCompletion:
        """Call the chosen model (no streaming) and record the answer and usage."""
        completions: Any = client.chat.completions  # messages are plain dicts, not TypedDicts
        completion: ChatCompletion = completions.create(
            model=self.model, messages=self.messages, **self.params
        )
        message = completion.choices[0].message if completion.choices else None
        self.answer, self.tool_calls = answer_of(message)
        if completion.usage is not None:
            self.prompt_tokens = completion.usage.prompt_tokens
            self.completion_tokens = completion.usage.completion_tokens
        return completion

    def stream(self, client: openai.OpenAI) -> Iterator[str]:
        """Call the chosen model with streaming; yields text pieces, records TTFT and usage."""
        completions: Any = client.chat.completions
        chunks: Iterator[ChatCompletionChunk] = completions.create(
            model=self.model,
            messages=self.messages,
            stream=True,
            stream_options={"include_usage": True},
            **self.params,
        )
        from openai.lib.streaming.chat import ChatCompletionStreamState  # noqa: PLC0415

        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()  # the SDK's
        for chunk in chunks:
            state.handle_chunk(chunk)
            if chunk.usage is not None:
                self.prompt_tokens = chunk.usage.prompt_tokens
                self.completion_tokens = chunk.usage.completion_tokens
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None and (delta.content or delta.tool_calls):
                self.first_output()
            if delta is not None and delta.content:
                yield delta.content
        self.answer, self.tool_calls = stream_answer(state)


#: The parameters the event's ``request`` names; any other the SDK takes goes, as JSON, to
#: ``request.other_params``.
_NAMED = frozenset(ChatRequest.model_fields) - {"messages", "other_params"}


#: The longest user or session key stored as given (``schemas._base.UserKey``).
MAX_KEY_CHARS = 256


def stored_key(key: str | None) -> str | None:
    """``key`` as stored: as given up to 256 characters, else ``sha256:<hex>`` of it.

    The Router routes on the key as given; only the stored form is bounded (an empty key is
    stored as none).
    """
    if not key:
        return None
    if len(key) <= MAX_KEY_CHARS:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def recorded_request(messages: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
    """The event's ``request``: the messages and parameters as the SDK sends them."""
    plain = {k: plain_json(v) for k, v in params.items() if v is not None}
    named = {k: v for k, v in plain.items() if k in _NAMED}
    other = {k: v for k, v in plain.items() if k not in _NAMED}
    return {"messages": messages, **named, **({"other_params": other} if other else {})}


def _is_timeout(exc: Exception) -> bool:
    """Whether ``exc`` is the ``openai`` client's timeout (loaded if it raised it)."""
    openai_module = sys.modules.get("openai")
    return openai_module is not None and isinstance(exc, openai_module.APITimeoutError)


@contextmanager
def track_request(
    router: Router,
    events: EventProducer,
    prices: Mapping[str, Price],
    *,
    route: str,
    key: str | None,
    messages: Sequence[Any],
    context_documents: Sequence[Mapping[str, Any]] = (),
    session_id: str | None = None,
    tenant: str | None = None,
    replayable: bool = True,
    request_id: str | None = None,
    **params: Any,
) -> Iterator[TrackedCall]:
    """Route one request, let the caller make the call, then emit its RequestEvent.

    Args:
        router: chooses the model (primary, canary or override) for ``key``.
        events: where the RequestEvent goes (never blocks, never raises on Kafka trouble).
        prices: per model; a model missing from it costs 0 (and is logged).
        route: the route (as in the flags).
        key: the user or session id the Router hashes (None: a random bucket).
        messages: the chat messages sent to the model.
        context_documents: retrieved documents (``{"text": ..., "id": ...}``).
        session_id: the conversation, when known.
        tenant: the customer, when known.
        replayable: False for requests that must never be sent to another model.
        request_id: the event's id (a new one when omitted).
        params: sampling parameters sent to the model (temperature, max_tokens, seed…).

    Yields:
        The call to make: ``call.create(client)`` or ``call.stream(client)``.
    """
    accepted = chat_parameters()
    unknown = set(params) - accepted
    if unknown:
        raise TypeError(
            f"track_request got parameters chat.completions.create does not take: "
            f"{sorted(unknown)}; it takes {sorted(accepted)}"
        )
    sent = [message_as_sent(m) for m in messages]
    call = TrackedCall(assignment=router.choose(route, key), messages=sent, params=dict(params))
    record = EventContext(events=events, prices=prices, route=route, key=key,
                          request=recorded_request(sent, params),
                          context_documents=context_documents, session_id=session_id,
                          tenant=tenant, replayable=replayable, request_id=request_id)  # fmt: skip
    with record.emitted_after(call):
        yield call


@dataclass(frozen=True, kw_only=True)
class EventContext:
    """Everything a RequestEvent takes besides the call's outcome."""

    events: EventProducer
    prices: Mapping[str, Price]
    route: str
    key: str | None
    request: dict[str, Any]
    context_documents: Sequence[Mapping[str, Any]] = ()
    session_id: str | None = None
    tenant: str | None = None
    replayable: bool = True
    request_id: str | None = None

    @contextmanager
    def emitted_after(self, call: CallRecord) -> Iterator[None]:
        """Emit the call's RequestEvent when the block ends (the exception still propagates)."""
        event_time = dt.datetime.now(dt.UTC)
        status, error_type = "ok", None
        try:
            yield
        except Exception as exc:
            status = "timeout" if _is_timeout(exc) else "error"
            error_type = type(exc).__name__
            raise
        finally:
            self._emit(call, event_time, status, error_type)

    def _emit(
        self, call: CallRecord, event_time: dt.datetime, status: str, error_type: str | None
    ) -> None:
        latency_ms = (time.perf_counter() - call.started) * 1000
        price = self.prices.get(call.model)
        if price is None:
            log.warning("no price for model %s: its cost is recorded as 0", call.model)
        came_back = call.answer is not None or call.ttft_s is not None or status == "ok"
        cost = price.cost if price else None
        usage = usage_fields(call.prompt_tokens, call.completion_tokens, cost, came_back=came_back)
        data: dict[str, Any] = {
            "request_id": self.request_id or f"req-{uuid.uuid4().hex}",
            "event_time": event_time,
            "route": self.route,
            "user_key": stored_key(self.key),
            "session_id": stored_key(self.session_id),
            "tenant": self.tenant,
            "request": self.request,
            "context_documents": [dict(d) for d in self.context_documents],
            "model": call.model,
            "arm": call.assignment.arm,
            "flags_version": call.assignment.flags_version,
            "replayable": self.replayable,
            "answer": call.answer,
            "tool_calls": call.tool_calls,
            "latency_ms": latency_ms,
            "ttft_ms": call.ttft_s * 1000 if call.ttft_s is not None else None,
            **usage,
            "status": status,
            "error_type": error_type,
        }
        try:
            event = RequestEvent.parse(data)
        except EventValidationError as exc:  # kept on disk with why: never silently lost
            log.warning("the RequestEvent of a %s call could not be built (%s): kept in %s",
                        self.route, exc, self.events.dead_letter_path)  # fmt: skip
            self.events.dead_letter("RequestEvent", data, str(exc))
        else:
            self.events.emit_request(event)
