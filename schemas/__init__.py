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
        schema = cls.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://shadowlab.dev/schemas/{name}.v{_version_of(cls)}.json"
        out[name] = schema
    return out


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
