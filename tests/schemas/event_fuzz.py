"""Hypothesis strategies for event JSON: valid events, odd values, and raw invalid JSON.

Values are generated from the pydantic annotations (so every event type is covered) as JSON
*text fragments*, which lets a test inject what ``json.dumps`` cannot write: ``NaN``,
``1e400``, lone surrogate escapes, duplicate keys, 7-digit second fractions...
"""

from __future__ import annotations

import datetime as dt
import json
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types as at
from hypothesis import strategies as st
from pydantic import AwareDatetime, BaseModel
from pydantic.fields import FieldInfo
from pydantic.types import StringConstraints

from schemas import Event
from tests.samples import sample_events

Fragment = str

#: Tokens that are wrong, or right only for some parsers, for almost any field.
ODD_TOKENS: tuple[Fragment, ...] = (
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1.0",
    "-0.0",
    "1e400",
    "-1e400",
    "0.1e-400",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e16",
    "-1e16",
    "1E2",
    "18446744073709551616",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "0.1000000000000000055511151231257827",
    '""',
    '" "',
    '"a\\nb"',
    '"abc\\n"',
    '"\\ud800"',
    '"\\udc00x"',
    '"\\u0000"',
    '"caf\\u00e9"',
    '"\\u0031\\u0032"',
    "[]",
    "{}",
    '{"a": 1, "a": 2}',
    '[1, "x", null]',
    '"2026-11-20T12:00:00"',
    '"2026-11-20T12:00:00.1234567Z"',
    '"2026-11-20T12:00:00.9999999Z"',
    '"2026-11-20T23:59:60Z"',
    '"2026-11-20T24:00:00Z"',
    '"2026-11-20T12:00Z"',
    '"2026-11-20"',
    '"2026-11-20T12:00:00,5Z"',
    '"2026-11-20T12:00:00.Z"',
    '"2026-02-30T12:00:00Z"',
    '"2026-11-20T12:00:00+24:00"',
    '"2026-11-20T12:00:00\\u002e123Z"',
    "1700000000",
    "1700000000.5",
    '"1700000000"',
    '"ok"',
    '"primary"',
    '"joined"',
    '"faithfulness"',
    '"support-answer"',
    '"Support Answer"',
    '"x" ',
)


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            out.update(_constraints(list(item.metadata)))
        elif isinstance(item, StringConstraints):
            for key in ("min_length", "max_length", "pattern"):
                if getattr(item, key) is not None:
                    out[key] = getattr(item, key)
        elif isinstance(item, at.MinLen):
            out["min_length"] = item.min_length
        elif isinstance(item, at.MaxLen):
            out["max_length"] = item.max_length
        elif isinstance(item, at.Ge):
            out["ge"] = item.ge
        elif isinstance(item, at.Le):
            out["le"] = item.le
    return out


def _dump(value: Any, ascii_only: bool = False) -> Fragment:
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=False)


_SMALL_TEXT = st.text(max_size=12)
_ANY_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e16, -1e16, 1e300, 2.5e-8, 0.1, 1.0]),
    _SMALL_TEXT,
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    _ANY_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(_SMALL_TEXT, inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def datetime_text(draw: st.DrawFn) -> Fragment:
    """An aware datetime in one of the spellings pydantic and msgspec accept (or not)."""
    moment = draw(st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9998, 12, 30)))
    sep = draw(st.sampled_from(["T", "T", "t", " "]))
    text = moment.strftime("%Y-%m-%d") + sep + moment.strftime("%H:%M:%S")
    digits = draw(st.sampled_from([0, 0, 3, 6, 6, 7, 9, 1]))
    if digits:
        fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"
        text += "." + fraction[:digits]
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    sign = "-" if minutes < 0 else "+"
    offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    zone = draw(
        st.sampled_from(
            ["Z", "z", "+00:00", "-00:00", offset, offset.replace(":", ""), "", "+05:30"]
        )
    )
    return _dump(text + zone)


@st.composite
def _string(draw: st.DrawFn, c: dict[str, Any]) -> Fragment:
    lo, hi = c.get("min_length", 0), c.get("max_length")
    if "pattern" in c:
        body = c["pattern"].removeprefix("^").removesuffix("$")
        value = draw(st.from_regex(rf"\A(?:{body})\Z", fullmatch=True))
        if hi is not None:
            value = value[:hi] or value
    else:
        value = draw(
            st.one_of(
                st.text(min_size=lo, max_size=max(lo, min(hi or 40, 40))),
                st.just("é" * (hi or 3)) if hi is not None and hi <= 2000 else st.just("é"),
            )
        )
    return _dump(value, ascii_only=draw(st.booleans()))


def _number(c: dict[str, Any], integer: bool) -> st.SearchStrategy[Fragment]:
    lo, hi = c.get("ge"), c.get("le")
    if integer:
        low = lo if lo is not None else -(2**70)
        high = hi if hi is not None else 2**70
        return st.integers(min_value=low, max_value=high).map(str)
    low = float(lo) if lo is not None else None
    high = float(hi) if hi is not None else None
    floats = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    bounds = [b for b in (low, high) if b is not None]
    return st.one_of(
        floats.map(_dump),
        floats.map(lambda f: f"{f:.20g}"),  # more digits than the shortest spelling
        st.sampled_from(bounds or [0.0]).map(_dump),
        st.integers(min_value=int(low or 0), max_value=int(min(high or 1e6, 1e6))).map(str),
    )


def valid_value(
    annotation: Any, metadata: list[Any], odd_rate: float
) -> st.SearchStrategy[Fragment]:
    """JSON text that the annotation's type (probably) accepts."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return valid_value(inner, [*metadata, *extra], odd_rate)
    c = _constraints(metadata)
    if origin in (Union, types.UnionType):
        return st.one_of([valid_value(a, [], odd_rate) for a in get_args(annotation)])
    if origin is Literal:
        return st.sampled_from(get_args(annotation)).map(_dump)
    if origin in (list, dict):
        return _container(annotation, c, odd_rate)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return event_json(annotation, odd_rate).map(bytes.decode)
    return _scalar(annotation, c)


def _container(annotation: Any, c: dict[str, Any], odd_rate: float) -> st.SearchStrategy[Fragment]:
    args = get_args(annotation)
    if get_origin(annotation) is list:
        return st.lists(
            value(args[0], [], odd_rate), min_size=c.get("min_length", 0), max_size=3
        ).map(lambda items: "[" + ",".join(items) + "]")
    return st.dictionaries(_SMALL_TEXT, value(args[1], [], odd_rate), max_size=3).map(
        lambda d: "{" + ",".join(f"{_dump(k)}:{v}" for k, v in d.items()) + "}"
    )


def _scalar(annotation: Any, c: dict[str, Any]) -> st.SearchStrategy[Fragment]:
    simple: dict[Any, st.SearchStrategy[Fragment]] = {
        type(None): st.just("null"),
        None: st.just("null"),
        Any: ANY_JSON.map(_dump),
        AwareDatetime: datetime_text(),
        bool: st.sampled_from(["true", "false"]),
    }
    if annotation in simple:
        return simple[annotation]
    if annotation is str:
        return _string(c)
    if annotation in (int, float):
        return _number(c, integer=annotation is int)
    raise TypeError(f"no strategy for {annotation!r}")


def value(annotation: Any, metadata: list[Any], odd_rate: float) -> st.SearchStrategy[Fragment]:
    """Mostly valid JSON for the annotation; with probability ``odd_rate``, something odd."""
    valid = valid_value(annotation, metadata, odd_rate)
    if odd_rate == 0:
        return valid
    odd = st.one_of(
        st.sampled_from(ODD_TOKENS), ANY_JSON.map(_dump), st.text(max_size=5).map(_dump)
    )
    return st.floats(0, 1).flatmap(lambda x: odd if x < odd_rate else valid)


@st.composite
def event_json(draw: st.DrawFn, model: type[BaseModel], odd_rate: float) -> bytes:
    """A JSON object for ``model``: generated fields, some omitted, odd ones at ``odd_rate``."""
    parts: list[str] = []
    for name, info in model.model_fields.items():
        if info.is_required():
            if draw(st.floats(0, 1)) < odd_rate / 5:
                continue  # a required field missing
        elif draw(st.booleans()):
            continue
        fragment = draw(value(info.annotation, list(info.metadata), odd_rate))
        parts.append(f"{_dump(name)}:{fragment}")
    if parts and draw(st.floats(0, 1)) < odd_rate / 5:
        parts.append(draw(st.sampled_from(parts)))  # a duplicate key
    if draw(st.floats(0, 1)) < odd_rate / 5:
        parts.append('"not_a_field":1')
    parts = draw(st.permutations(parts))
    return ("{" + ",".join(parts) + "}").encode()


#: Strings at the edges of the identifier and route patterns (``$`` is the end of text).
PATTERN_EDGES: tuple[Fragment, ...] = (
    '"abc\\n"',
    '"abc\\n\\n"',
    '" abc"',
    '"ab c"',
    '"a\\tb"',
    '"a\\u007fb"',
    '"ABC"',
    '"-abc"',
    '"abc-"',
    '"a.b_c-d"',
    '"\\u00e9t\\u00e9"',
    '"~!"',
)


def odd_value(annotation: Any, metadata: list[Any]) -> st.SearchStrategy[Fragment]:
    """Something odd for one field: generic odd tokens, or edges of its own constraints."""
    c = _constraints(metadata)
    edges: list[Fragment] = list(PATTERN_EDGES)
    for key in ("ge", "le"):
        if key in c and isinstance(c[key], dt.datetime):  # an instant's range: its edges
            tick = dt.timedelta(microseconds=1)
            edges += [_dump((c[key] + d).isoformat()) for d in (-tick, dt.timedelta(0), tick)]
        elif key in c:
            bound = float(c[key])
            edges += [_dump(bound), _dump(bound - 1e-9), _dump(bound + 1e-9), str(int(bound))]
    if "max_length" in c:
        edges += [_dump("x" * c["max_length"]), _dump("x" * (c["max_length"] + 1))]
    return st.one_of(
        st.sampled_from(ODD_TOKENS),
        st.sampled_from(edges),
        datetime_text(),
        ANY_JSON.map(_dump),
        st.text(max_size=6).map(_dump),
    )


def _one_field(info: FieldInfo, odd: bool, odd_rate: float) -> st.SearchStrategy[Fragment]:
    if odd:
        return odd_value(info.annotation, list(info.metadata))
    return valid_value(info.annotation, list(info.metadata), odd_rate)


@st.composite
def mutated_object(
    draw: st.DrawFn, model: type[BaseModel], data: dict[str, Any], odd_rate: float
) -> Fragment:
    """``data`` (valid for ``model``) as JSON with one or two fields replaced.

    A replaced field gets a valid value or, half of the time, an odd one; a nested part
    (a model-typed field) may be mutated inside instead.
    """
    fields = model.model_fields
    replaced = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1, max_size=2))
    parts = []
    for name, info in fields.items():
        if name not in replaced:
            if name in data:
                parts.append(f"{_dump(name)}:{_dump(data[name])}")
            continue
        annotation = info.annotation
        nested = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if nested and isinstance(data.get(name), dict) and draw(st.booleans()):
            fragment = draw(mutated_object(annotation, data[name], odd_rate))
        elif draw(st.booleans()) and not draw(st.booleans()):
            continue  # the field left out
        else:
            fragment = draw(_one_field(info, draw(st.booleans()), odd_rate))
        parts.append(f"{_dump(name)}:{fragment}")
    return "{" + ",".join(parts) + "}"


@st.composite
def mutated_sample(draw: st.DrawFn, model: type[Event]) -> bytes:
    """A sample event of ``model`` with one or two fields (maybe nested) replaced."""
    sample = next(e for e in sample_events().values() if type(e) is model)
    data: dict[str, Any] = json.loads(sample.to_json())
    if "request" in data and draw(st.booleans()):  # richer requests: tools, formats, parts
        data["request"] |= {
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "response_format": {"type": "json_object"},
        }
    return draw(mutated_object(model, data, 0.0)).encode()


def payloads(model: type[Event]) -> st.SearchStrategy[bytes]:
    """Valid, nearly valid and broken payloads of ``model``."""
    rate = st.sampled_from([0.0, 0.0, 0.05, 0.2])
    return st.one_of(
        mutated_sample(model),
        mutated_sample(model),
        rate.flatmap(lambda r: event_json(model, r)),
        st.sampled_from([b"", b"{", b"[]", b"null", b"\x00not json", b'{"a":1}x']),
    )
