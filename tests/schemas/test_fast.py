"""The msgspec fast path agrees with the pydantic models: same verdicts, same rows, same errors."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Annotated, Any, Self

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from schemas import EVENT_TYPES, Event, EventValidationError, RequestEvent
from schemas.fast import FLOAT_TEXT_LIMIT, BatchDecoder, wire_struct
from sinks.clickhouse import spec_of, to_row
from tests.samples import sample_events
from tests.schemas.event_fuzz import payloads

NAMES = sorted(EVENT_TYPES)


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (datetimes: same instant and same UTC offset)."""
    if isinstance(a, dt.datetime) or isinstance(b, dt.datetime):
        same = isinstance(a, dt.datetime) and isinstance(b, dt.datetime)
        return same and a == b and a.utcoffset() == b.utcoffset()
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, (list, dict)):
        pairs = zip(a, b, strict=True) if isinstance(a, list) else ((a[k], b[k]) for k in a)
        return (
            len(a) == len(b)
            and (isinstance(a, list) or a.keys() == b.keys())
            and all(_same(x, y) for x, y in pairs)
        )
    return bool(a == b)


def _pydantic_verdicts(
    model: type[Event], batch: list[bytes]
) -> tuple[list[list[Any]], dict[int, str]]:
    rows: list[list[Any]] = []
    errors: dict[int, str] = {}
    for i, payload in enumerate(batch):
        try:
            rows.append(to_row(model.from_json(payload), spec_of(model)))
        except EventValidationError as exc:
            errors[i] = str(exc)
    return rows, errors


@pytest.mark.parametrize("name", NAMES)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_fast_path_and_pydantic_agree_on_every_payload(name: str, data: st.DataObject) -> None:
    model = EVENT_TYPES[name]
    batch = data.draw(st.lists(payloads(model), min_size=1, max_size=6), label="batch")
    decoded = BatchDecoder(model, spec_of(model).json_columns).decode(batch)
    rows, errors = _pydantic_verdicts(model, batch)
    assert {i: str(e) for i, e in decoded.rejected} == errors  # same verdicts, same reasons
    assert decoded.count == len(rows)
    assert decoded.fields == tuple(spec_of(model).columns)
    got = [list(r) for r in zip(*decoded.columns, strict=True)] if decoded.count else []
    assert len(got) == len(rows)
    for fast, reference in zip(got, rows, strict=True):  # same rows, in message order
        assert all(_same(a, b) for a, b in zip(fast, reference, strict=True)), (fast, reference)


@pytest.mark.parametrize("name", NAMES)
def test_canonical_json_of_every_type_takes_the_fast_path(name: str) -> None:
    event = sample_events()[name]
    decoded = BatchDecoder(type(event), spec_of(type(event)).json_columns).decode(
        [event.to_json()] * 3
    )
    assert (decoded.count, decoded.fallbacks, decoded.rejected) == (3, 0, [])
    assert [list(r) for r in zip(*decoded.columns, strict=True)] == [
        to_row(event, spec_of(type(event)))
    ] * 3


def _request_json(**changes: Any) -> bytes:
    data = json.loads(sample_events()["RequestEvent"].to_json())
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (_request_json(event_time=1_700_000_000), "pydantic reads numbers as datetimes"),
        (_request_json(event_time="2026-11-20T12:00:00.1234567Z"), "pydantic truncates"),
        (_request_json(schema_version=True), "pydantic's Literal[1] takes true"),
        (
            _request_json(request={"messages": [{"role": "user"}], "tools": [{"x": 1e17}]}),
            "pydantic writes 1e+17",
        ),
    ],
)
def test_what_pydantic_accepts_and_msgspec_declines_is_kept(payload: bytes, why: str) -> None:
    decoded = BatchDecoder(RequestEvent, spec_of(RequestEvent).json_columns).decode([payload])
    assert (decoded.count, decoded.fallbacks, decoded.rejected) == (1, 1, []), why
    row = [c[0] for c in decoded.columns]
    assert row == to_row(RequestEvent.from_json(payload), spec_of(RequestEvent))


def test_a_bad_event_in_a_batch_is_rejected_alone_with_pydantic_s_reason() -> None:
    good = sample_events()["RequestEvent"].to_json()
    bad = _request_json(route="Not A Slug")
    decoded = BatchDecoder(RequestEvent).decode([good, bad, good])
    assert decoded.count == 2
    [(index, error)] = decoded.rejected
    assert index == 1
    assert error.fields == ["route"]
    with pytest.raises(EventValidationError) as reference:
        RequestEvent.from_json(bad)
    assert str(error) == str(reference.value)


@pytest.mark.parametrize("name", NAMES)
def test_the_wire_struct_mirrors_the_model_field_by_field(name: str) -> None:
    """Names, order, required fields, defaults, bounds, lengths and literals match."""
    model = EVENT_TYPES[name]
    info = msgspec.inspect.type_info(wire_struct(model))
    assert isinstance(info, msgspec.inspect.StructType)
    schema = model.model_json_schema(mode="validation")
    properties = schema["properties"]
    assert [f.name for f in info.fields] == list(model.model_fields)
    assert {f.name for f in info.fields if f.required} == set(schema.get("required", []))
    for f in info.fields:
        prop = properties[f.name]
        if "default" in prop:
            assert f.default == prop["default"], f.name
        _assert_constraints(f.name, f.type, prop, schema.get("$defs", {}))


def _assert_constraints(
    where: str, mtype: msgspec.inspect.Type, prop: dict[str, Any], defs: dict[str, Any]
) -> None:
    """Compare one msgspec type with its JSON Schema (what pydantic validates)."""
    if "$ref" in prop:
        prop = defs[prop["$ref"].split("/")[-1]]
    if "anyOf" in prop:
        members = [m for m in prop["anyOf"] if m.get("type") != "null"]
        assert isinstance(mtype, msgspec.inspect.UnionType), where
        typed = [t for t in mtype.types if not isinstance(t, msgspec.inspect.NoneType)]
        assert len(typed) == len(members), where
        for t, m in zip(typed, members, strict=True):
            _assert_constraints(where, t, m, defs)
        return
    check = _CHECKS.get(type(mtype))
    assert check is not None, f"{where}: {mtype}"
    check(where, mtype, prop, defs)


def _check_str(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    if prop.get("format") == "date-time":  # parsed per batch as an aware datetime
        return
    assert prop["type"] == "string", where
    assert mtype.min_length == prop.get("minLength"), where
    assert mtype.max_length == prop.get("maxLength"), where
    assert mtype.pattern is None, where  # patterns are checked per batch


def _check_literal(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    assert set(mtype.values) == set(prop.get("enum", [prop.get("const")])), where


def _check_number(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    assert prop["type"] in ("integer", "number"), where
    if isinstance(mtype, msgspec.inspect.FloatType) and mtype.gt is not None:
        # floats in nested parts stay below FLOAT_TEXT_LIMIT (above it, pydantic decides)
        assert (mtype.gt, mtype.lt) == (-FLOAT_TEXT_LIMIT, FLOAT_TEXT_LIMIT), where
        return
    assert mtype.ge == prop.get("minimum"), where
    assert mtype.le == prop.get("maximum"), where


def _check_list(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    assert prop["type"] == "array", where
    assert mtype.min_length == prop.get("minItems"), where
    _assert_constraints(where, mtype.item_type, prop.get("items", {}), defs)


def _check_dict(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    assert prop["type"] == "object", where


def _check_struct(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    assert [f.name for f in mtype.fields] == list(prop["properties"]), where
    for f in mtype.fields:
        _assert_constraints(f"{where}.{f.name}", f.type, prop["properties"][f.name], defs)


def _check_nothing(where: str, mtype: Any, prop: dict[str, Any], defs: dict[str, Any]) -> None:
    return


_CHECKS = {
    msgspec.inspect.StrType: _check_str,
    msgspec.inspect.LiteralType: _check_literal,
    msgspec.inspect.IntType: _check_number,
    msgspec.inspect.FloatType: _check_number,
    msgspec.inspect.ListType: _check_list,
    msgspec.inspect.DictType: _check_dict,
    msgspec.inspect.StructType: _check_struct,
    msgspec.inspect.BoolType: _check_nothing,
    msgspec.inspect.AnyType: _check_nothing,
}


class _Base(Event):
    route: str = "r"


class _FieldValidated(_Base):
    @field_validator("route")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class _Stripped(_Base):
    name: Annotated[str, StringConstraints(strip_whitespace=True)] = "x"


class _BeforeValidated(_Base):
    @model_validator(mode="before")
    @classmethod
    def _fill(cls, data: Any) -> Any:
        return data


class _Aliased(_Base):
    name: str = Field("x", alias="Name")


class _Naive(_Base):
    at: dt.datetime


class _Part(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore")
    x: int = 0


class _Lenient(_Base):
    part: _Part = _Part()


class _AwareWithDefault(_Base):
    at: AwareDatetime = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "model",
    [_FieldValidated, _Stripped, _BeforeValidated, _Aliased, _Naive, _Lenient, _AwareWithDefault],
)
def test_a_model_the_fast_path_does_not_understand_is_refused(model: type[Event]) -> None:
    with pytest.raises(TypeError):
        BatchDecoder(model)


def test_every_event_type_has_a_fast_path() -> None:
    for model in EVENT_TYPES.values():
        BatchDecoder(model)  # raises TypeError if the derivation drifted


class _Checked(_Base):
    """A model validator reading a datetime runs on parsed datetimes."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError("end before start")
        return self


def test_validators_that_read_datetimes_see_datetimes() -> None:
    ok = b'{"start":"2026-01-01T00:00:00+01:00","end":"2026-01-01T00:00:00Z"}'
    bad = b'{"start":"2026-01-01T00:00:00Z","end":"2026-01-01T00:00:00+01:00"}'
    decoded = BatchDecoder(_Checked).decode([ok, bad])
    assert decoded.count == 1
    assert [i for i, _ in decoded.rejected] == [1]
