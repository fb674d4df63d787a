"""The sink's path (fast decode, column insert) stores exactly what the pydantic path stores."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from typing import Any

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


def _storable(event: Event, types: tuple[str, ...]) -> bool:
    """Whether the columns can hold the event (valid events can overflow a UInt column)."""
    for value, type_name in zip(
        (getattr(event, f) for f in type(event).model_fields), types, strict=True
    ):
        bits = re.search(r"UInt(\d+)", type_name)
        if isinstance(value, dt.datetime) and not _LOW <= value <= _HIGH:
            return False
        if bits and isinstance(value, int) and not 0 <= value < 2 ** int(bits.group(1)):
            return False
    return True


def _stored(client: Client, database: str, spec: TableSpec) -> list[tuple[Any, ...]]:
    rows = client.query(
        f"SELECT {', '.join(spec.columns)} FROM {database}.{spec.table} ORDER BY ALL"
    ).result_rows
    return [tuple(r) for r in rows]


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
    types = column_types(clickhouse, new, spec).names
    events: list[Event] = []
    kept: list[bytes] = []
    for payload in batch:
        try:
            event = model.from_json(payload)
        except EventValidationError:
            kept.append(payload)  # rejected by both: nothing stored
            continue
        if _storable(event, types):
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
