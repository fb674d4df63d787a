"""The sink's path (fast decode, column insert) stores exactly what the pydantic path stores."""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Iterator
from typing import Any, Literal, get_args, get_origin

import annotated_types as at
import pytest
from clickhouse_connect.driver.client import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import EVENT_TYPES, Event, EventValidationError
from schemas.fast import BatchDecoder
from sinks.clickhouse import TableSpec, column_types, insert_columns, spec_of, to_row
from sinks.migrations import apply_migrations
from tests.schemas.event_fuzz import payloads

# DateTime64 holds 1900..2299; outside it both paths store garbage, differently.
_LOW = dt.datetime(1900, 1, 2, tzinfo=dt.UTC)
_HIGH = dt.datetime(2299, 12, 30, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def two_databases(clickhouse: Client) -> Iterator[tuple[str, str]]:
    names = (f"t_{uuid.uuid4().hex[:10]}", f"t_{uuid.uuid4().hex[:10]}")
    for name in names:
        apply_migrations(clickhouse, name)
    yield names
    for name in names:
        clickhouse.command(f"DROP DATABASE IF EXISTS {name}")


def _storable(event: Event) -> bool:
    """Whether the columns can hold the event's instants (the schemas bound every integer)."""
    values = (getattr(event, f) for f in type(event).model_fields)
    return all(_LOW <= v <= _HIGH for v in values if isinstance(v, dt.datetime))


def _integer_bounds(model: type[Event], name: str) -> tuple[int | None, int | None]:
    """The (ge, le) bounds pydantic enforces on one integer field (None when unbounded)."""
    info = model.model_fields[name]
    if get_origin(info.annotation) is Literal:
        values = get_args(info.annotation)
        return min(values), max(values)
    metadata = list(info.metadata)
    for arg in get_args(info.annotation):  # ``Count64 | None``: the bounds sit inside
        metadata += getattr(arg, "__metadata__", ())
    for item in list(metadata):
        metadata += getattr(item, "metadata", ())  # pydantic FieldInfo inside Annotated
    ge = [m.ge for m in metadata if isinstance(m, at.Ge)]
    le = [m.le for m in metadata if isinstance(m, at.Le)]
    return (max(ge) if ge else None), (min(le) if le else None)


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_integer_a_schema_accepts_fits_its_column(
    name: str, clickhouse: Client, two_databases: tuple[str, str]
) -> None:
    """An event the schema accepts must be insertable: otherwise the sink would retry forever."""
    model = EVENT_TYPES[name]
    spec = spec_of(model)
    described = column_types(clickhouse, two_databases[0], spec).names
    types = dict(zip(spec.columns, described, strict=True))
    checked = 0
    for field_name, type_name in types.items():
        width = re.fullmatch(r"(?:Nullable\()?(U?)Int(\d+)\)?", type_name)
        if width is None:
            continue
        unsigned, bits = width.group(1) == "U", int(width.group(2))
        low, high = (0, 2**bits - 1) if unsigned else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        ge, le = _integer_bounds(model, field_name)
        where = f"{name}.{field_name} ({type_name})"
        assert ge is not None, f"{where}: no lower bound"
        assert ge >= low, where
        assert le is not None, f"{where}: no upper bound"
        assert le <= high, where
        checked += 1
    assert checked == sum(1 for t in types.values() if "Int" in t)


def _stored(client: Client, database: str, spec: TableSpec) -> list[tuple[Any, ...]]:
    rows = client.query(
        f"SELECT {', '.join(spec.columns)} FROM {database}.{spec.table} ORDER BY ALL"
    ).result_rows
    return [tuple(_comparable(v) for v in r) for r in rows]


def _comparable(value: Any) -> Any:
    """NaN as a marker: two NaNs read from two tables are equal rows (``nan != nan``)."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_the_sink_path_stores_what_the_pydantic_path_stores(
    name: str, data: st.DataObject, clickhouse: Client, two_databases: tuple[str, str]
) -> None:
    model = EVENT_TYPES[name]
    spec = spec_of(model)
    batch = data.draw(st.lists(payloads(model), min_size=1, max_size=25), label="batch")
    old, new = two_databases
    for database in two_databases:
        clickhouse.command(f"TRUNCATE TABLE {database}.{spec.table}")
    events: list[Event] = []
    kept: list[bytes] = []
    for payload in batch:
        try:
            event = model.from_json(payload)
        except EventValidationError:
            kept.append(payload)  # rejected by both: nothing stored
            continue
        if _storable(event):
            events.append(event)
            kept.append(payload)
    # the pydantic path, as the sink wrote before: rows, row-oriented, types described
    if events:
        clickhouse.insert(
            f"{old}.{spec.table}", [to_row(e, spec) for e in events], column_names=spec.columns
        )
    decoded = BatchDecoder(model, spec.json_columns).decode(kept)
    assert decoded.count == len(events)
    if decoded.count:
        insert_columns(clickhouse, new, spec, decoded.columns, column_types(clickhouse, new, spec))
    assert _stored(clickhouse, new, spec) == _stored(clickhouse, old, spec)
