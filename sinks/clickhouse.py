"""ClickHouse access for events: open the client, map events to rows and back.

One code path serves both deployments: clickhouse-connect over ``chdb:///path`` (the
engine in-process; one engine path per process) or ``http(s)://…:8123``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from pydantic import TypeAdapter

from schemas import (
    Alert,
    Comparison,
    Event,
    FeedbackEvent,
    GateDecision,
    Judgement,
    RequestEvent,
    RoutingFlags,
    ShadowResult,
)
from shadowlab.exceptions import ClickHouseError
from sinks.base import Sink

E = TypeVar("E", bound=Event)


@dataclass(frozen=True)
class TableSpec:
    """Where an event type is stored, and which of its fields are stored as JSON text."""

    table: str
    event_type: type[Event]
    json_columns: frozenset[str] = field(default_factory=frozenset)

    @property
    def columns(self) -> list[str]:
        """The table's columns written by the sink: the event's fields, in order."""
        return list(self.event_type.model_fields)

    @cached_property
    def json_encoders(self) -> tuple[tuple[int, TypeAdapter[Any]], ...]:
        """(column position, pydantic-core encoder) of each column stored as JSON text."""
        fields = self.event_type.model_fields
        return tuple(
            (i, TypeAdapter(cast(Any, fields[name].annotation)))
            for i, name in enumerate(fields)
            if name in self.json_columns
        )


TABLES: dict[type[Event], TableSpec] = {
    spec.event_type: spec
    for spec in (
        TableSpec("requests", RequestEvent, frozenset({"request", "context_documents"})),
        TableSpec("shadow_results", ShadowResult),
        TableSpec("comparisons", Comparison),
        TableSpec("judgements", Judgement),
        TableSpec("feedback", FeedbackEvent),
        TableSpec("routing_flags", RoutingFlags),
        TableSpec("gate_decisions", GateDecision),
        TableSpec("alerts", Alert),
    )
}


def open_client(dsn: str, database: str | None = None) -> Client:
    """Open a clickhouse-connect client on ``dsn`` with timezone-aware datetimes.

    For ``chdb://PATH`` the directory is created first.

    Raises:
        ClickHouseError: naming the (password-free) target when the connection fails.
    """
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    try:
        client = clickhouse_connect.get_client(dsn=dsn, database=database, tz_mode="aware")
    except Exception as exc:
        target = dsn.rsplit("@", maxsplit=1)[-1]
        raise ClickHouseError(
            f"cannot connect to ClickHouse at {target}: {type(exc).__name__}; check "
            "SHADOWLAB_CLICKHOUSE__DSN, and that the server is up"
        ) from None
    return client


def spec_of(event_type: type[Event]) -> TableSpec:
    """Return the table spec of ``event_type``."""
    return TABLES[event_type]


def to_row(event: Event, spec: TableSpec) -> list[Any]:
    """Return the row (in ``spec.columns`` order) that stores ``event``.

    Field values as they are (the sink's hot path: no intermediate dict), nested parts as
    compact JSON text encoded by pydantic-core.
    """
    row = [getattr(event, name) for name in spec.columns]
    for i, encoder in spec.json_encoders:
        row[i] = encoder.dump_json(row[i]).decode()
    return row


def from_row(row: Mapping[str, Any], spec: TableSpec) -> Event:
    """Rebuild the event stored in ``row`` (a column → value mapping)."""
    data = {c: row[c] for c in spec.columns}
    for column in spec.json_columns:
        data[column] = json.loads(data[column])
    return spec.event_type.parse(data)


def insert_events(client: Client, database: str, events: Sequence[Event]) -> int:
    """Insert events of one type in one block; returns the number of rows written."""
    if not events:
        return 0
    spec = spec_of(type(events[0]))
    rows = [to_row(e, spec) for e in events]
    client.insert(f"{database}.{spec.table}", rows, column_names=spec.columns)
    return len(rows)


def query_events(
    client: Client,
    database: str,
    event_type: type[E],
    *,
    where: str = "1",
    parameters: Mapping[str, Any] | None = None,
    order_by: str = "tuple()",
) -> list[E]:
    """Read events back, duplicates hidden (``FINAL``).

    ``where`` and ``order_by`` are SQL written by the caller; values go in ``parameters``
    as ``{name:Type}`` placeholders, never formatted into the SQL.
    """
    spec = spec_of(event_type)
    sql = (
        f"SELECT {', '.join(spec.columns)} FROM {database}.{spec.table} FINAL "  # noqa: S608
        f"WHERE {where} ORDER BY {order_by}"
    )
    result = client.query(sql, parameters=dict(parameters or {}))
    return [cast(E, from_row(row, spec)) for row in result.named_results()]


class ClickHouseSink(Sink):
    """Writes events to their ClickHouse tables, one insert per event type per flush.

    Idempotent: every table is a ReplacingMergeTree on the event's natural key, read with
    ``FINAL`` (see :mod:`sinks.migrations`).
    """

    def __init__(self, client: Client, database: str) -> None:
        super().__init__()
        self.client = client
        self.database = database

    def write(self, batches: dict[tuple[str, int], list[Event]]) -> None:
        """Insert the events, grouped by type.

        Raises:
            ClickHouseError: naming the table when an insert failed.
        """
        by_type: dict[type[Event], list[Event]] = {}
        for events in batches.values():
            for event in events:
                by_type.setdefault(type(event), []).append(event)
        for event_type, events in by_type.items():
            try:
                insert_events(self.client, self.database, events)
            except Exception as exc:
                raise ClickHouseError(
                    f"insert into {self.database}.{spec_of(event_type).table} failed: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from None
