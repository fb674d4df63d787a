"""What services emit: the production request with its primary answer, and user feedback."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas._base import (
    Count64,
    Event,
    Identifier,
    Millis,
    ModelName,
    RouteName,
    ShortText,
    Timestamp,
    Tokens,
    Usd,
    UserKey,
)

#: How a model call ended. ``timeout`` is the client giving up; ``error`` any other failure.
CallStatus = Literal["ok", "error", "timeout"]
#: Which side of the routing decision served the request.
Arm = Literal["primary", "canary", "override"]


class _Part(BaseModel):
    """Base of the nested (non-event) parts: strict, frozen, no unknown fields."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid")


class ChatMessage(_Part):
    """One message of an OpenAI-style chat request."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    #: Text, or OpenAI content parts (``[{"type": "text", "text": ...}]``), or none for
    #: an assistant message that only calls tools.
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    #: The rest of an assistant message as the SDK sends it back in a tool loop.
    refusal: str | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None


class ChatRequest(_Part):
    """The full request as sent to the model, so a shadow can replay it exactly."""

    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    #: ``{"type": "json_object"}`` or ``{"type": "json_schema", ...}``.
    response_format: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    seed: int | None = None
    #: One stop sequence or a list of them, as the OpenAI API accepts both.
    stop: str | list[str] | None = None
    #: The current name of the completion limit (reasoning models take only this one).
    max_completion_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    #: Every other parameter the installed SDK's ``chat.completions.create`` takes (``n``,
    #: ``presence_penalty``, ``parallel_tool_calls``, ``reasoning_effort``…), as sent: kept as
    #: JSON and sent again as it was, so a parameter this schema does not name is never lost.
    other_params: dict[str, Any] | None = None
    #: ``responses`` when the service called ``client.responses.create``: then ``messages``
    #: and the parameters above are that request in chat form (what the shadow replays), and
    #: ``responses_params`` holds its parameters with no chat equivalent, as sent (kept for
    #: the record, never replayed). ``None``: ``chat.completions.create``.
    api: Literal["responses"] | None = None
    responses_params: dict[str, Any] | None = None


class ContextDocument(_Part):
    """A retrieved document given to the model (the ground for faithfulness)."""

    text: Annotated[str, Field(max_length=1_000_000)]
    id: str | None = None
    source: str | None = None


class _ModelCall(Event):
    """Fields every model call carries: the answer, timings, tokens, cost and status."""

    answer: str | None = None
    latency_ms: Millis
    ttft_ms: Millis | None = None
    #: Tokens and cost as the server reported them; ``None`` (with ``usage_known`` false)
    #: when it reported no usage: unknown, not free.
    prompt_tokens: Tokens | None = 0
    completion_tokens: Tokens | None = 0
    cost_usd: Usd | None = 0.0
    #: False when the server sent no usage for a call that produced output: then the tokens
    #: and the cost are null, and budgets count the call at its worst case.
    usage_known: bool = True
    status: CallStatus
    #: Required unless status is ``ok``, e.g. ``RateLimitError``, ``APITimeoutError``.
    error_type: ShortText | None = None
    #: The tools the model called instead of (or besides) answering, as the SDK gives them:
    #: ``[{"id", "type": "function", "function": {"name", "arguments"}}]``.
    tool_calls: list[dict[str, Any]] | None = None

    @model_validator(mode="after")
    def _status_matches_error(self) -> Self:
        if self.status == "ok" and self.error_type is not None:
            raise ValueError("error_type must be empty when status is 'ok'")
        if self.status != "ok" and not self.error_type:
            raise ValueError(f"error_type is required when status is {self.status!r}")
        usage = (self.prompt_tokens, self.completion_tokens, self.cost_usd)
        if self.usage_known and None in usage:
            raise ValueError(
                "prompt_tokens, completion_tokens and cost_usd are required when usage_known "
                "is true; send usage_known false (and nulls) when the server reported no usage"
            )
        if not self.usage_known and usage != (None, None, None):
            raise ValueError(
                "prompt_tokens, completion_tokens and cost_usd must be null when usage_known "
                "is false (unknown usage is not a number)"
            )
        return self


class RequestEvent(_ModelCall):
    """One production request and the answer the served (primary, canary or override) model gave.

    Emitted by the service after the call, keyed by ``request_id`` on ``llm.requests``.
    """

    request_id: Identifier
    #: When the service received the request (event time: windows and gates use this).
    event_time: Timestamp
    route: RouteName
    user_key: UserKey | None = None
    session_id: UserKey | None = None
    tenant: Identifier | None = None
    request: ChatRequest
    context_documents: list[ContextDocument] = Field(default_factory=list)
    #: The model that served the request, and why (the Router's arm).
    model: ModelName
    arm: Arm
    flags_version: Count64 | None = None
    #: False for requests that must never be sent to another model (PII, contracts…).
    replayable: bool = True
    metadata: dict[str, str] = Field(default_factory=dict)


class FeedbackEvent(Event):
    """A user's verdict on an answer: CSAT 1–5 and/or thumbs up/down."""

    feedback_id: Identifier
    request_id: Identifier
    event_time: Timestamp
    route: RouteName
    #: The model and arm that served the request, when the service knows them.
    model: ModelName | None = None
    arm: Arm | None = None
    user_key: UserKey | None = None
    csat: Annotated[int, Field(ge=1, le=5)] | None = None
    thumbs: Literal["up", "down"] | None = None
    comment: ShortText | None = None

    @model_validator(mode="after")
    def _has_a_verdict(self) -> Self:
        if self.csat is None and self.thumbs is None:
            raise ValueError("feedback needs csat (1-5) or thumbs ('up'/'down'), or both")
        return self
