"""A compiled fast path for decoding batches of events, derived from the pydantic models.

The pydantic models stay the definition of what is valid. :class:`BatchDecoder` decodes
JSON bytes with `msgspec <https://jcristharif.com/msgspec/>`_ structs *derived at import
time from those models* (field names, order, types, bounds, lengths, literals, defaults,
unknown fields refused), so the common case costs a C parser instead of pydantic's Python
validation. Anything the fast path does not accept goes to the pydantic model, which has the
last word:

- pydantic rejects it too: the batch reports pydantic's :class:`EventValidationError`
  (the same message as ``Event.from_json``, so dead-letter reasons do not change);
- pydantic accepts it (msgspec is stricter in a few places: numbers as datetimes, ``NaN``,
  ``1e400``, ``Literal[1]`` given ``true``…): the event is kept, with pydantic's values.

So the fast path can only be faster, never more permissive nor different. Where msgspec
would *accept* something pydantic rejects or would read differently, the fast path checks it
itself or hands the event to pydantic:

- regex patterns (pydantic's Rust regex, where ``$`` is the end of text) are checked per
  batch with Python's ``re.fullmatch`` on the distinct values, not per event inside msgspec;
- datetimes are decoded as text and parsed per batch; a fraction with more than six digits
  goes to pydantic (msgspec rounds it, pydantic truncates);
- model validators (``@model_validator(mode="after")``) are the models' own functions,
  called on each decoded row;
- floats inside nested parts are stored as JSON text, and msgspec writes ``1e16`` where
  pydantic writes ``1e+16``: a float of magnitude ``>= 1e16`` there goes to pydantic.

A model the derivation does not understand (a before/wrap validator, a transforming string
constraint, an alias…) raises ``TypeError`` at derivation, so the fast path cannot drift
silently from the models; ``tests/schemas/test_fast.py`` checks the agreement with
hypothesis.
"""

from __future__ import annotations

import datetime as dt
import re
import types
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, cast, get_args, get_origin

import annotated_types as at
import msgspec
from pydantic import AwareDatetime, BaseModel, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic.types import AllowInfNan, Strict, StringConstraints
from pydantic_core import PydanticUndefined

from schemas._base import Event
from schemas.errors import EventValidationError

E = TypeVar("E", bound=Event)

#: Floats of this magnitude or more are written ``1e+16`` by pydantic and ``1e16`` by
#: msgspec; inside nested parts (stored as JSON text) they take the pydantic path.
FLOAT_TEXT_LIMIT = 1e16

_ENCODER = msgspec.json.Encoder()
_AWARE_DATETIMES = msgspec.json.Decoder(list[Annotated[dt.datetime, msgspec.Meta(tz=True)]])
#: A seconds fraction longer than microseconds: msgspec rounds it, pydantic truncates it.
_LONG_FRACTION = re.compile(r"\.[0-9]{7}")


def _guard_float(text: str) -> float:
    """The msgspec hook for floats in untyped (``Any``) values: refuse what prints differently."""
    value = float(text)
    if not -FLOAT_TEXT_LIMIT < value < FLOAT_TEXT_LIMIT:
        raise ValueError("float takes the pydantic path")
    return value


@dataclass(frozen=True)
class _Field:
    name: str
    wire: Any  # the msgspec annotation the JSON is decoded with
    default: Any  # msgspec.NODEFAULT, a value, or a msgspec.field(...)
    pattern: _BatchPattern | None = None  # checked per batch (top-level strings only)
    datetime: bool = False  # decoded as text, parsed per batch
    #: A datetime's inclusive bounds (``ge``/``le``), checked per batch.
    bounds: tuple[dt.datetime | None, dt.datetime | None] = (None, None)


#: A pattern that is one character class repeated: ``^[…]+$`` or ``^[…]*$``.
_ONE_CLASS = re.compile(r"(\[(?:[^\]\\]|\\.)+\])([+*])")


@dataclass(frozen=True)
class _BatchPattern:
    """A pydantic string pattern, checked on a whole column at once."""

    value: re.Pattern[str]  # one value (Python syntax, ``$`` as end of text)
    #: For ``^[…]+$`` / ``^[…]*$``: the class repeated, matched against all values joined
    #: (every character of every value is in the class), and whether values may be empty.
    joined: re.Pattern[str] | None = None
    empty_ok: bool = True

    @classmethod
    def of(cls, pattern: str, where: str) -> _BatchPattern:
        value = _python_pattern(pattern, where)
        one_class = _ONE_CLASS.fullmatch(pattern[1:-1])
        if one_class is None:
            return cls(value)
        joined = re.compile(rf"{one_class.group(1)}*\Z")
        return cls(value, joined, empty_ok=one_class.group(2) == "*")

    def failing(self, values: Sequence[Any]) -> set[Any]:
        """The values (``None`` ignored) that do not match."""
        present = [v for v in values if v is not None] if None in values else values
        if (
            self.joined is not None
            and self.joined.match("".join(present))
            and (self.empty_ok or "" not in present)
        ):
            return set()
        return {v for v in set(present) if self.value.match(v) is None}


class _Deriver:
    """Turns pydantic annotations into msgspec ones (``TypeError`` for anything unknown)."""

    def __init__(self) -> None:
        self._parts: dict[type[BaseModel], type[msgspec.Struct]] = {}

    def event_fields(self, model: type[BaseModel]) -> list[_Field]:
        _check_model(model)
        fields: list[_Field] = []
        for name, info in model.model_fields.items():
            where = f"{model.__name__}.{name}"
            _check_field(model, name, info)
            default = _default_of(model, name, info)
            annotation, metadata = info.annotation, list(info.metadata)
            if annotation is AwareDatetime:
                _check_metadata(where, metadata, allowed=_DATETIME_METADATA)
                if default is not msgspec.NODEFAULT:
                    raise TypeError(f"{where}: a datetime with a default has no fast path")
                bounds = _datetime_bounds(metadata)
                fields.append(_Field(name, str, default, datetime=True, bounds=bounds))
                continue
            optional = _optional_datetime(annotation)
            if optional is not None:
                flat = _flatten([*metadata, *optional], where)
                _check_metadata(where, flat, allowed=_DATETIME_METADATA)
                if default is not None:
                    raise TypeError(f"{where}: an optional datetime defaults to None only")
                bounds = _datetime_bounds(flat)
                fields.append(_Field(name, str | None, default, datetime=True, bounds=bounds))
                continue
            patterns: list[str] = []
            wire = self.convert(annotation, metadata, nested=False, where=where, patterns=patterns)
            if len(patterns) > 1:
                raise TypeError(f"{where}: several patterns are not supported")
            pattern = _BatchPattern.of(patterns[0], where) if patterns else None
            fields.append(_Field(name, wire, default, pattern=pattern))
        return fields

    def part(self, model: type[BaseModel]) -> type[msgspec.Struct]:
        """The struct of a nested part (a model that is not an event)."""
        if model not in self._parts:
            _check_model(model)
            fields: list[tuple[str, Any, Any]] = []
            for name, info in model.model_fields.items():
                _check_field(model, name, info)
                where = f"{model.__name__}.{name}"
                wire = self.convert(info.annotation, list(info.metadata), nested=True, where=where)
                fields.append((name, wire, _default_of(model, name, info)))
            self._parts[model] = _struct(model.__name__, fields)
        return self._parts[model]

    def convert(
        self,
        annotation: Any,
        metadata: list[Any],
        *,
        nested: bool,
        where: str,
        patterns: list[str] | None = None,
    ) -> Any:
        """The msgspec annotation for ``annotation`` constrained by ``metadata``.

        With ``patterns`` (a top-level field), the regex pattern of a ``str`` or ``str | None``
        is appended there, to be checked per batch, instead of inside msgspec.
        """
        origin = get_origin(annotation)
        if origin is Annotated:
            inner, *extra = get_args(annotation)
            return self.convert(
                inner, [*metadata, *extra], nested=nested, where=where, patterns=patterns
            )
        metadata = _flatten(metadata, where)
        if origin in (Union, types.UnionType):
            if metadata:
                raise TypeError(f"{where}: constraints on a union are not supported")
            members = [
                self.convert(a, [], nested=nested, where=where, patterns=patterns)
                for a in get_args(annotation)
            ]
            return Union[tuple(members)]  # noqa: UP007 - built from a runtime tuple
        if origin in (list, dict):
            return self._container(annotation, metadata, nested=nested, where=where)
        if origin is Literal or (
            isinstance(annotation, type) and issubclass(annotation, BaseModel)
        ):
            _check_metadata(where, metadata, allowed=())
            return annotation if origin is Literal else self._nested(annotation, where)
        return _scalar(annotation, metadata, nested=nested, where=where, patterns=patterns)

    def _container(self, annotation: Any, metadata: list[Any], *, nested: bool, where: str) -> Any:
        args = get_args(annotation)
        if get_origin(annotation) is list:
            item = self.convert(args[0], [], nested=nested, where=where)
            return _constrained(list[item], metadata, where)  # type: ignore[valid-type]
        if args[0] is not str:
            raise TypeError(f"{where}: only str keys are supported")
        value = self.convert(args[1], [], nested=nested, where=where)
        return _constrained(dict[str, value], metadata, where)  # type: ignore[valid-type]

    def _nested(self, model: type[BaseModel], where: str) -> type[msgspec.Struct]:
        if issubclass(model, Event):
            raise TypeError(f"{where}: an event nested in an event is not supported")
        return self.part(model)


def _scalar(
    annotation: Any, metadata: list[Any], *, nested: bool, where: str, patterns: list[str] | None
) -> Any:
    if annotation is type(None) or annotation is None:
        return None
    if annotation is Any:
        return Any
    if annotation is str and patterns is not None:
        patterns.extend(m.pattern for m in metadata if isinstance(m, _Pattern))
        metadata = [m for m in metadata if not isinstance(m, _Pattern)]
    if annotation is float and nested:  # written back as JSON text: keep to what both print alike
        metadata = [*metadata, at.Gt(-FLOAT_TEXT_LIMIT), at.Lt(FLOAT_TEXT_LIMIT)]
    if annotation in (str, bool, int, float):
        return _constrained(annotation, metadata, where)
    raise TypeError(f"{where}: no fast path for {annotation!r}")


def _flatten(metadata: list[Any], where: str) -> list[Any]:
    """Expand ``FieldInfo`` and ``StringConstraints`` into plain constraint objects."""
    out: list[Any] = []
    for item in metadata:
        if isinstance(item, FieldInfo):
            if item.alias or item.validation_alias:
                raise TypeError(f"{where}: aliases are not supported")
            out.extend(_flatten(list(item.metadata), where))
        elif isinstance(item, StringConstraints):
            if item.strip_whitespace or item.to_upper or item.to_lower or item.ascii_only:
                raise TypeError(f"{where}: transforming string constraints are not supported")
            if item.min_length is not None:
                out.append(at.MinLen(item.min_length))
            if item.max_length is not None:
                out.append(at.MaxLen(item.max_length))
            if item.pattern is not None:
                out.append(_Pattern(str(item.pattern)))
        else:
            out.append(item)
    return out


@dataclass(frozen=True)
class _Pattern:
    pattern: str


def _constrained(base: Any, metadata: list[Any], where: str) -> Any:
    """``Annotated[base, msgspec.Meta(...)]`` for the bounds and lengths in ``metadata``."""
    meta: dict[str, Any] = {}
    lower: tuple[float, bool] | None = None  # (bound, inclusive)
    upper: tuple[float, bool] | None = None
    for item in metadata:
        if isinstance(item, (at.Ge, at.Gt)):
            bound = (
                (cast(float, item.ge), True)
                if isinstance(item, at.Ge)
                else (cast(float, item.gt), False)
            )
            if lower is None or (bound[0], not bound[1]) > (lower[0], not lower[1]):
                lower = bound
        elif isinstance(item, (at.Le, at.Lt)):
            bound = (
                (cast(float, item.le), True)
                if isinstance(item, at.Le)
                else (cast(float, item.lt), False)
            )
            if upper is None or (bound[0], bound[1]) < (upper[0], upper[1]):
                upper = bound
        elif isinstance(item, at.MinLen):
            meta["min_length"] = item.min_length
        elif isinstance(item, at.MaxLen):
            meta["max_length"] = item.max_length
        elif isinstance(item, _Pattern):
            # nested: checked inside msgspec, with pydantic's end-of-text ``$``
            meta["pattern"] = _python_pattern(item.pattern, where).pattern
        elif isinstance(item, (Strict, AllowInfNan)):
            # msgspec is strict, and JSON has no inf/nan: anything these would let through
            # in pydantic fails here and takes the pydantic path
            continue
        else:
            raise TypeError(f"{where}: unsupported constraint {item!r}")
    if lower is not None:
        meta["ge" if lower[1] else "gt"] = lower[0]
    if upper is not None:
        meta["le" if upper[1] else "lt"] = upper[0]
    return Annotated[base, msgspec.Meta(**meta)] if meta else base


def _python_pattern(pattern: str, where: str) -> re.Pattern[str]:
    """The pydantic (Rust) ``^…$``, where ``$`` is the end of text, as a Python pattern."""
    body = pattern.removeprefix("^").removesuffix("$")
    if (
        not pattern.startswith("^")
        or not pattern.endswith("$")
        or any(c in body for c in "|$^")
        or body.endswith("\\")
    ):
        raise TypeError(f"{where}: pattern {pattern!r} has no fast path (want ^…$, no |)")
    return re.compile(rf"^(?:{body})\Z")


def _check_model(model: type[BaseModel]) -> None:
    config = model.model_config
    if config.get("extra") != "forbid" or not config.get("strict"):
        raise TypeError(f"{model.__name__}: the fast path needs strict=True, extra='forbid'")
    decorators = model.__pydantic_decorators__
    if decorators.field_validators or decorators.validators or decorators.root_validators:
        raise TypeError(f"{model.__name__}: field validators have no fast path")
    if any(d.info.mode != "after" for d in decorators.model_validators.values()):
        raise TypeError(f"{model.__name__}: only mode='after' model validators have a fast path")
    if not issubclass(model, Event) and decorators.model_validators:
        raise TypeError(f"{model.__name__}: validators on nested parts have no fast path")
    if decorators.field_serializers or decorators.model_serializers:
        raise TypeError(f"{model.__name__}: custom serializers have no fast path")


def _check_field(model: type[BaseModel], name: str, info: FieldInfo) -> None:
    if info.alias or info.validation_alias:
        raise TypeError(f"{model.__name__}.{name}: aliases are not supported")


def _check_metadata(where: str, metadata: list[Any], allowed: tuple[type, ...]) -> None:
    for item in metadata:
        if not isinstance(item, allowed):
            raise TypeError(f"{where}: unsupported constraint {item!r}")


def _default_of(model: type[BaseModel], name: str, info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return msgspec.field(default_factory=cast(Callable[[], Any], info.default_factory))
    if info.default is PydanticUndefined:
        return msgspec.NODEFAULT
    if info.default is None or isinstance(info.default, (str, int, float, bool)):
        return info.default
    raise TypeError(f"{model.__name__}.{name}: default {info.default!r} is not supported")


def _struct(name: str, fields: list[tuple[str, Any, Any]]) -> type[msgspec.Struct]:
    return msgspec.defstruct(
        name,
        [(n, t) if d is msgspec.NODEFAULT else (n, t, d) for n, t, d in fields],
        kw_only=True,  # keep the models' field order whatever the defaults
        forbid_unknown_fields=True,
        frozen=True,
        gc=False,  # events hold no reference cycles
    )


@dataclass
class DecodedBatch(Generic[E]):
    """The valid events of a batch as columns, and the invalid ones with their errors.

    ``columns[j]`` holds field ``fields[j]`` of every valid event, in message order, as the
    event's attribute value (a field listed in ``json_fields`` as its compact JSON text).
    """

    event_type: type[E]
    fields: tuple[str, ...]
    columns: list[Sequence[Any]]
    count: int
    #: (index in the batch, pydantic's error) of every invalid message.
    rejected: list[tuple[int, EventValidationError]]
    #: How many valid events pydantic decoded after the fast path declined them.
    fallbacks: int = 0


class BatchDecoder(Generic[E]):
    """Decodes batches of one event type: msgspec first, pydantic for what it declines."""

    def __init__(self, event_type: type[E], json_fields: frozenset[str] = frozenset()) -> None:
        self.event_type = event_type
        spec = _spec(event_type)
        self.fields = tuple(f.name for f in spec.fields)
        unknown = json_fields - set(self.fields)
        if unknown:
            raise ValueError(f"{event_type.__name__} has no field(s) {sorted(unknown)}")
        self.json_fields = json_fields
        self._spec = spec
        self._json_positions = [self.fields.index(f) for f in sorted(json_fields)]
        self._json_adapters = {
            f: TypeAdapter(cast(Any, event_type.model_fields[f].annotation)) for f in json_fields
        }

    def decode(self, payloads: Sequence[bytes]) -> DecodedBatch[E]:
        """Decode and validate every payload (JSON bytes) of the batch."""
        spec = self._spec
        decode = spec.decoder.decode
        try:
            structs: list[Any] = list(map(decode, payloads))
            positions = list(range(len(payloads)))
            declined: list[int] = []
        except Exception:  # whatever it is, pydantic decides
            structs, positions, declined = [], [], []
            for i, payload in enumerate(payloads):
                try:
                    structs.append(decode(payload))
                    positions.append(i)
                except Exception:
                    declined.append(i)
        columns, positions, more = self._checked_columns(structs, positions)
        declined.extend(more)
        for j in self._json_positions:
            columns[j] = _json_texts(columns[j])
        if not declined:
            return DecodedBatch(self.event_type, self.fields, columns, len(positions), [])
        return self._with_fallbacks(payloads, columns, positions, sorted(declined))

    def _checked_columns(
        self, structs: list[Any], positions: list[int]
    ) -> tuple[list[Sequence[Any]], list[int], list[int]]:
        """Columns of the structs that pass the batch checks; the positions of the others."""
        spec = self._spec
        declined: list[int] = []
        while True:
            columns: list[Sequence[Any]] = (
                list(zip(*map(msgspec.structs.astuple, structs), strict=True))
                if structs
                else [() for _ in self.fields]
            )
            bad: set[int] = set()
            for j in spec.datetime_positions:
                columns[j] = _aware_datetimes(columns[j], bad)
                _check_bounds(columns[j], spec.fields[j].bounds, bad)
            for j, pattern in spec.patterns:
                _check_pattern(columns[j], pattern, bad)
            if not bad:
                _run_validators(spec.struct_validators, structs, bad)
            if spec.row_validators and not bad:
                _run_validators(spec.row_validators, map(spec.row_type, *columns), bad)
            if not bad:
                return columns, positions, declined
            declined.extend(positions[k] for k in bad)
            structs = [s for k, s in enumerate(structs) if k not in bad]
            positions = [p for k, p in enumerate(positions) if k not in bad]

    def _with_fallbacks(
        self,
        payloads: Sequence[bytes],
        columns: list[Sequence[Any]],
        positions: list[int],
        declined: list[int],
    ) -> DecodedBatch[E]:
        rows: list[tuple[int, Sequence[Any]]] = list(
            zip(positions, zip(*columns, strict=True), strict=True)
        )
        rejected: list[tuple[int, EventValidationError]] = []
        fallbacks = 0
        for i in declined:
            try:
                event = self.event_type.from_json(payloads[i])
            except EventValidationError as exc:
                rejected.append((i, exc))
                continue
            rows.append((i, self.row_of(event)))
            fallbacks += 1
        rows.sort(key=lambda r: r[0])
        merged: list[Sequence[Any]] = (
            list(zip(*(r for _, r in rows), strict=True)) if rows else [() for _ in self.fields]
        )
        return DecodedBatch(self.event_type, self.fields, merged, len(rows), rejected, fallbacks)

    def row_of(self, event: E) -> list[Any]:
        """The row of a pydantic event: attribute values, ``json_fields`` as JSON text."""
        row = [getattr(event, name) for name in self.fields]
        for j in self._json_positions:
            adapter = self._json_adapters[self.fields[j]]
            row[j] = adapter.dump_json(row[j]).decode()
        return row


@dataclass(frozen=True)
class _Spec:
    fields: list[_Field]
    decoder: msgspec.json.Decoder[Any]
    row_type: type[msgspec.Struct]
    datetime_positions: list[int]
    patterns: list[tuple[int, _BatchPattern]]
    #: The models' own ``mode="after"`` validators; those that read no datetime field run
    #: on the decoded struct, the others on a row with the datetimes parsed.
    struct_validators: list[Callable[[Any], Any]]
    row_validators: list[Callable[[Any], Any]]


@cache
def _spec(event_type: type[Event]) -> _Spec:
    fields = _Deriver().event_fields(event_type)
    datetimes = {f.name for f in fields if f.datetime}
    validators = [d.func for d in event_type.__pydantic_decorators__.model_validators.values()]
    wire = _struct(f"{event_type.__name__}Wire", [(f.name, f.wire, f.default) for f in fields])
    row_type = msgspec.defstruct(
        f"{event_type.__name__}Row", [f.name for f in fields], frozen=True, gc=False
    )
    return _Spec(
        fields=fields,
        decoder=msgspec.json.Decoder(wire, float_hook=_guard_float),
        row_type=row_type,
        datetime_positions=[j for j, f in enumerate(fields) if f.datetime],
        patterns=[(j, f.pattern) for j, f in enumerate(fields) if f.pattern is not None],
        struct_validators=[v for v in validators if not _reads(v, datetimes)],
        row_validators=[v for v in validators if _reads(v, datetimes)],
    )


def _reads(function: Callable[..., Any], names: set[str]) -> bool:
    """Whether ``function`` may read any of ``names`` (or anything it cannot be sure of)."""
    code = getattr(function, "__code__", None)
    if code is None:
        return True
    if code.co_freevars or any(isinstance(c, type(code)) for c in code.co_consts):
        return True  # closures and nested functions: do not guess
    referenced = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    return bool(referenced & names)


def wire_struct(event_type: type[Event]) -> type[msgspec.Struct]:
    """The msgspec struct the fast path decodes ``event_type`` with (for tests and docs)."""
    return cast(type[msgspec.Struct], _spec(event_type).decoder.type)


def _optional_datetime(annotation: Any) -> list[Any] | None:
    """The metadata of ``AwareDatetime | None`` (``None``: ``annotation`` is not that)."""
    if get_origin(annotation) not in (Union, types.UnionType):
        return None
    args = get_args(annotation)
    others = [a for a in args if a is not type(None)]
    if len(args) != 2 or len(others) != 1:
        return None
    inner, extra = others[0], []
    if get_origin(inner) is Annotated:
        inner, *extra = get_args(inner)
    return list(extra) if inner is AwareDatetime else None


def _aware_datetimes(texts: Sequence[Any], bad: set[int]) -> Sequence[Any]:
    """Parse a column of datetime texts (``None`` stays ``None``); mark what pydantic must read."""
    if any(t is None for t in texts):
        present = [k for k, t in enumerate(texts) if t is not None]
        inner: set[int] = set()
        parsed = _aware_datetimes([texts[k] for k in present], inner)
        column: list[Any] = [None] * len(texts)
        for k, value in zip(present, parsed, strict=True):
            column[k] = value
        bad.update(present[i] for i in inner)
        return column
    if _LONG_FRACTION.search("\n".join(texts)):
        bad.update(k for k, t in enumerate(texts) if _LONG_FRACTION.search(t))
    try:
        return cast(list[Any], _AWARE_DATETIMES.decode(_ENCODER.encode(texts)))
    except msgspec.ValidationError:
        out: list[Any] = []
        for k, text in enumerate(texts):
            try:
                out.append(_AWARE_DATETIMES.decode(_ENCODER.encode([text]))[0])
            except msgspec.ValidationError:
                bad.add(k)
                out.append(None)
        return out


#: What a datetime field may carry besides strictness: inclusive bounds.
_DATETIME_METADATA = (Strict, at.Ge, at.Le)


def _datetime_bounds(metadata: Sequence[Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    low = next((m.ge for m in metadata if isinstance(m, at.Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, at.Le)), None)
    return cast(dt.datetime | None, low), cast(dt.datetime | None, high)


def _check_bounds(
    values: Sequence[Any], bounds: tuple[dt.datetime | None, dt.datetime | None], bad: set[int]
) -> None:
    """Mark the datetimes outside ``bounds`` (pydantic then rejects them, naming the field)."""
    low, high = bounds
    if low is None and high is None:
        return
    for k, value in enumerate(values):
        if value is None:
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            bad.add(k)


def _run_validators(
    validators: list[Callable[[Any], Any]], rows: Iterable[Any], bad: set[int]
) -> None:
    if not validators:
        return
    rows = list(rows)
    try:
        for validator in validators:
            for row in rows:
                validator(row)
    except Exception:  # find which rows fail; pydantic gives their errors
        for k, row in enumerate(rows):
            try:
                for validator in validators:
                    validator(row)
            except Exception:
                bad.add(k)


def _check_pattern(values: Sequence[Any], pattern: _BatchPattern, bad: set[int]) -> None:
    failing = pattern.failing(values)
    if failing:
        bad.update(k for k, v in enumerate(values) if v in failing)


def _json_texts(values: Sequence[Any]) -> list[str]:
    """Compact JSON text of every value, one encoder call for the column.

    msgspec never writes a raw newline inside a JSON value (strings escape it), so the lines
    of ``encode_lines`` are exactly the values.
    """
    if not values:
        return []
    lines = _ENCODER.encode_lines(values).decode().split("\n")
    lines.pop()  # the text ends with a newline
    return lines
