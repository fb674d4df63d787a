"""shadowlab's event schemas: pydantic v2 models, JSON on the wire, no I/O.

Every event has ``schema_version``, strict types (timezone-aware datetimes, bounded
numbers), ``Event.from_json`` / ``to_json`` and :class:`EventValidationError` naming the
bad field. :func:`json_schemas` gives one JSON Schema per event type for other languages.
"""

from __future__ import annotations

from typing import Any

from schemas._base import Event
from schemas.errors import EventValidationError, ShadowlabError
from schemas.evaluation import Comparison, Judgement, ShadowResult
from schemas.request import (
    Arm,
    CallStatus,
    ChatMessage,
    ChatRequest,
    ContextDocument,
    FeedbackEvent,
    RequestEvent,
)
from schemas.rollout import Alert, GateDecision, Outcome, RoutingFlags, Stage

#: Every event type by name, in the order data flows.
EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        RequestEvent,
        ShadowResult,
        Comparison,
        Judgement,
        FeedbackEvent,
        RoutingFlags,
        GateDecision,
        Alert,
    )
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Return the JSON Schema (draft 2020-12) of every event type, by type name.

    The schemas describe the wire format (``mode="validation"``): what a producer in any
    language must send.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, cls in EVENT_TYPES.items():
        schema = _with_timestamp_pattern(cls.model_json_schema(mode="validation"))
        rules = CROSS_FIELD_RULES.get(name)
        if rules:
            schema["allOf"] = [*schema.get("allOf", []), *rules]
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://shadowlab.dev/schemas/{name}.v{_version_of(cls)}.json"
        out[name] = schema
    return out


#: An RFC 3339 instant *with* its offset, in ``Timestamp``'s years (1900-2299): what the
#: models accept as a time (``format: date-time`` alone is not checked by every validator,
#: and allows year 9999).
TIMESTAMP_PATTERN = (
    r"^(19\d\d|2[0-2]\d\d)-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt ]"
    r"([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):?[0-5]\d)$"
)


def _when(field: str, value: Any) -> dict[str, Any]:
    return {"properties": {field: {"const": value}}, "required": [field]}


def _present(field: str) -> dict[str, Any]:
    return {"properties": {field: {"not": {"type": "null"}}}, "required": [field]}


def _absent(field: str) -> dict[str, Any]:
    return {"properties": {field: {"type": "null"}}}


#: The models' cross-field rules, in JSON Schema (``if``/``then``), by event type. Rules
#: comparing two values (``claims_supported <= claims_total``, ``canary != primary``,
#: ``window_end >= window_start``) cannot be written in JSON Schema; they are listed in the
#: README and checked by the models (a violating event is dead-lettered with the reason).
_USAGE = ("prompt_tokens", "completion_tokens", "cost_usd")
_CALL_RULES = [
    {"if": _when("status", "ok"), "then": _absent("error_type"),
     "else": {**_present("error_type"),
              "properties": {"error_type": {"type": "string", "minLength": 1}}}},
    {"if": _when("usage_known", False),
     "then": {"allOf": [_absent(f) | {"required": [f]} for f in _USAGE]},
     "else": {"properties": {f: {"not": {"type": "null"}} for f in _USAGE}}},
]  # fmt: skip
CROSS_FIELD_RULES: dict[str, list[dict[str, Any]]] = {
    "RequestEvent": _CALL_RULES,
    "ShadowResult": _CALL_RULES,
    "Comparison": [
        {"if": _when("status", "missing"), "then": _absent("candidate_status")},
        {"if": _when("status", "joined"), "then": _present("candidate_status")},
    ],
    "FeedbackEvent": [{"anyOf": [_present("csat"), _present("thumbs")]}],
    "Judgement": [
        {
            "if": {"allOf": [_when("kind", "faithfulness"), {"not": _present("score")}]},
            "then": {
                **_present("no_score_reason"),
                "properties": {"no_score_reason": {"type": "string", "minLength": 1}},
            },
        },
        {
            "if": {"allOf": [_when("kind", "pairwise"), {"not": _present("preference")}]},
            "then": {
                **_present("no_score_reason"),
                "properties": {"no_score_reason": {"type": "string", "minLength": 1}},
            },
        },
    ],
    "RoutingFlags": [
        {
            "if": {
                "properties": {"canary_weight_bp": {"exclusiveMinimum": 0}},
                "required": ["canary_weight_bp"],
            },
            "then": _present("canary"),
        },
    ],
}


def _with_timestamp_pattern(schema: Any) -> Any:
    """``schema`` with :data:`TIMESTAMP_PATTERN` on every ``date-time`` string."""
    if isinstance(schema, dict):
        out = {k: _with_timestamp_pattern(v) for k, v in schema.items()}
        if out.get("format") == "date-time":
            out["pattern"] = TIMESTAMP_PATTERN
        return out
    if isinstance(schema, list):
        return [_with_timestamp_pattern(v) for v in schema]
    return schema


def _version_of(cls: type[Event]) -> int:
    default = cls.model_fields["schema_version"].default
    return int(default)


__all__ = [
    "EVENT_TYPES",
    "Alert",
    "Arm",
    "CallStatus",
    "ChatMessage",
    "ChatRequest",
    "Comparison",
    "ContextDocument",
    "Event",
    "EventValidationError",
    "FeedbackEvent",
    "GateDecision",
    "Judgement",
    "Outcome",
    "RequestEvent",
    "RoutingFlags",
    "ShadowResult",
    "ShadowlabError",
    "Stage",
    "json_schemas",
]
