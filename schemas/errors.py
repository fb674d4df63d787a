"""The root of shadowlab's exception hierarchy, and the schema validation error.

The whole hierarchy is drawn in :mod:`shadowlab.core.errors`; these two classes live here
because ``schemas`` is the bottom layer that every other package imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails


class ShadowlabError(Exception):
    """Base class of every error shadowlab raises on purpose."""


def _location(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(f".{item}" if parts else item)
    return "".join(parts) or "(event)"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class EventValidationError(ShadowlabError, ValueError):
    """An event does not match its schema.

    The message names the event type, every bad field (dotted path) and what was wrong with
    it, so a producing service can fix the event without reading pydantic internals.

    Attributes:
        event_type: the schema's name, e.g. ``RequestEvent``.
        errors: pydantic's structured error list, for programs.
    """

    def __init__(self, event_type: str, errors: list[ErrorDetails]) -> None:
        self.event_type = event_type
        self.errors = errors
        lines = [
            f"  {_location(e['loc'])}: {e['msg']}"
            + (f" (got {_shown(e.get('input'))})" if e["loc"] else "")
            for e in errors
        ]
        fields = ", ".join(sorted({_location(e["loc"]) for e in errors}))
        super().__init__(
            f"invalid {event_type}: {len(errors)} problem(s) in field(s) {fields}\n"
            + "\n".join(lines)
            + f"\nFix the field(s) named above; the JSON Schema of {event_type} is written by "
            "`shadowlab schemas export DIR`."
        )

    @property
    def fields(self) -> list[str]:
        """The dotted paths of the fields that failed validation."""
        return [_location(e["loc"]) for e in self.errors]

    @classmethod
    def from_pydantic(cls, event_type: str, exc: ValidationError) -> EventValidationError:
        """Wrap a pydantic ``ValidationError`` raised while validating ``event_type``."""
        return cls(event_type, exc.errors(include_url=False))
