"""The event base class: strict validation, frozen instances and fast JSON helpers."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.errors import EventValidationError

#: An identifier: non-empty, printable, at most 128 characters.
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")
]
#: A user's or session's key, as the service knows it: any text (names with spaces, e-mail
#: addresses with accents), up to 256 characters; ``track_request`` stores a longer one as
#: ``sha256:<hex>`` of it (the Router routes on the key as given, whatever its length).
UserKey = Annotated[str, StringConstraints(min_length=1, max_length=256)]
#: A route name as used in flags, topics keys and ClickHouse: lowercase slug.
RouteName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")
]
#: A model name as an OpenAI-compatible endpoint knows it.
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
#: Milliseconds, from 0 to one hour.
Millis = Annotated[float, Field(ge=0, le=3_600_000, allow_inf_nan=False)]
#: A token count.
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]
#: A count stored as ClickHouse ``UInt32``: larger values are rejected, never wrapped.
Count32 = Annotated[int, Field(ge=0, le=4_294_967_295)]
#: A counter or version stored as ClickHouse ``UInt64``; capped at 2**63 - 1, the fast
#: decoder's (msgspec) limit and far beyond any real version or count.
Count64 = Annotated[int, Field(ge=0, le=9_223_372_036_854_775_807)]
#: US dollars.
Usd = Annotated[float, Field(ge=0, le=1_000_000, allow_inf_nan=False)]
#: The earliest and latest instants ClickHouse's ``DateTime64(6)`` stores as given (outside
#: them it stores the nearest bound instead): what any event time may be.
TIMESTAMP_MIN = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)
TIMESTAMP_MAX = dt.datetime(2299, 12, 31, 23, 59, 59, 999_999, tzinfo=dt.UTC)
#: A timezone-aware instant inside ``DateTime64(6)``'s range; ISO-8601 strings are accepted
#: from Python dicts too.
Timestamp = Annotated[AwareDatetime, Field(strict=False, ge=TIMESTAMP_MIN, le=TIMESTAMP_MAX)]
#: A short free-text explanation (reasons, error types).
ShortText = Annotated[str, StringConstraints(max_length=2000)]


class Event(BaseModel):
    """Base of every event model: strict, frozen, unknown fields rejected.

    Construct with :meth:`parse` / :meth:`from_json` to get :class:`EventValidationError`
    (naming each bad field) instead of pydantic's ``ValidationError``.
    """

    model_config = ConfigDict(
        strict=True,
        frozen=True,
        extra="forbid",
        validate_default=False,
        ser_json_inf_nan="strings",
    )

    #: Bumped (as a new Literal in the subclass) when a field changes meaning or a required
    #: field is added; consumers refuse versions they do not know.
    schema_version: Literal[1] = 1

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Self:
        """Validate a Python mapping into this event.

        Raises:
            EventValidationError: naming every bad field.
        """
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise EventValidationError.from_pydantic(cls.__name__, exc) from None

    @classmethod
    def from_json(cls, data: bytes | str) -> Self:
        """Decode and validate JSON bytes (pydantic-core, no intermediate dict).

        Raises:
            EventValidationError: naming every bad field, or the JSON syntax error.
        """
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise EventValidationError.from_pydantic(cls.__name__, exc) from None

    def to_json(self) -> bytes:
        """Encode as compact UTF-8 JSON (pydantic-core's serializer)."""
        return self.__pydantic_serializer__.to_json(self)
