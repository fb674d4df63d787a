"""ClickHouse access for events: open the client, map events to rows and back.

One code path serves both deployments: clickhouse-connect over ``chdb:///path`` (the
engine in-process; one engine path per process) or ``http(s)://…:8123``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar, cast

import clickhouse_connect
from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.transform import NativeTransform
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
from schemas.fast import BatchDecoder, DecodedBatch
from shadowlab.core.errors import ClickHouseError
from sinks.base import Sink, Verdict
from sinks.identity import ID_SEPARATOR, IDS_TABLE, IdentityLedger, conflict, row_ids

E = TypeVar("E", bound=Event)


#: The most days one insert block may span. ClickHouse refuses a block that touches more than
#: ``max_partitions_per_insert_block`` (100) partitions; tables are partitioned by day (of the
#: server's time zone, so N UTC days can touch up to 2N): half of it is always safe.
MAX_DAYS_PER_INSERT = 50


@dataclass(frozen=True)
class TableSpec:
    """Where an event type is stored, which fields are JSON text, and what partitions it."""

    table: str
    event_type: type[Event]
    json_columns: frozenset[str] = field(default_factory=frozenset)
    #: The datetime column whose day (or month) is the table's partition.
    partitioned_by: str = "event_time"
    #: The columns that name one event: stored once (``event_ids``), whatever its time.
    #: Empty: a later event with the same key replaces the earlier (a re-decided tick).
    identity: tuple[str, ...] = ()
    #: A column whose value ranks two contents of one id (:data:`sinks.identity.RANKS`).
    ranked_by: str | None = None

    @cached_property
    def partition_position(self) -> int:
        """The position of :attr:`partitioned_by` in :attr:`columns`."""
        return self.columns.index(self.partitioned_by)

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
        TableSpec(
            "requests",
            RequestEvent,
            frozenset({"request", "context_documents", "tool_calls"}),
            identity=("request_id",),
        ),
        TableSpec(
            "shadow_results",
            ShadowResult,
            frozenset({"tool_calls"}),
            identity=("request_id", "candidate"),
        ),
        TableSpec(
            "comparisons",
            Comparison,
            identity=("request_id", "candidate_model"),
            ranked_by="status",
        ),
        TableSpec("judgements", Judgement, identity=("judgement_id",)),
        TableSpec("feedback", FeedbackEvent, identity=("feedback_id",)),
        TableSpec(
            "routing_flags",
            RoutingFlags,
            partitioned_by="changed_at",
            identity=("route", "version"),
        ),
        TableSpec("gate_decisions", GateDecision, partitioned_by="decided_at"),
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
        path = Path(dsn.removeprefix("chdb://"))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ClickHouseError(
                f"cannot use {path} for the embedded ClickHouse: {exc.strerror}; set "
                "SHADOWLAB_CLICKHOUSE__DSN (or data_dir) to a directory this user can write"
            ) from None
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
    columns = list(zip(*(to_row(e, spec) for e in events), strict=True))
    insert_columns(client, database, spec, columns, column_types(client, database, spec))
    return len(events)


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_DATETIME64 = re.compile(r"DateTime64\((\d)(?:,.*)?\)")


@dataclass(frozen=True)
class InsertTypes:
    """How a table's columns are sent: their type names, and which ones carry ticks.

    Known types spare clickhouse-connect a ``DESCRIBE`` per insert; ``DateTime64(p)``
    columns are sent as integer ticks computed exactly from the datetimes (no float
    timestamps on the way).
    """

    names: tuple[str, ...]
    ticks: tuple[tuple[int, dt.timedelta | None, int], ...]  # (position, divisor, multiplier)

    @cached_property
    def types(self) -> tuple[Any, ...]:
        """clickhouse-connect's type objects, for its Native encoder."""
        return tuple(get_from_name(name) for name in self.names)


def column_types(client: Client, database: str, spec: TableSpec) -> InsertTypes:
    """Read the table's column types (``DESCRIBE``) and derive how to send each column.

    Raises:
        ClickHouseError: when the table cannot be described (for example, not migrated yet).
    """
    try:
        described = client.query(f"DESCRIBE TABLE {database}.{spec.table}").result_rows
    except Exception as exc:
        raise ClickHouseError(
            f"insert into {database}.{spec.table} failed: cannot read its column types: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    types = {str(row[0]): str(row[1]) for row in described}
    names: list[str] = []
    ticks: list[tuple[int, dt.timedelta | None, int]] = []
    for j, column in enumerate(spec.columns):
        if column not in types:
            raise ClickHouseError(f"{database}.{spec.table} has no column {column!r}")
        type_name = types[column]
        match = _DATETIME64.fullmatch(type_name)
        if match is not None:
            precision = int(match.group(1))
            if precision <= 6:
                ticks.append((j, dt.timedelta(microseconds=10 ** (6 - precision)), 1))
            else:
                ticks.append((j, None, 10 ** (precision - 6)))
        names.append(type_name)
    return InsertTypes(tuple(names), tuple(ticks))


def native_block(
    client: Client,
    database: str,
    spec: TableSpec,
    columns: Sequence[Sequence[Any]],
    types: InsertTypes,
) -> bytes:
    """Encode rows given as columns in ClickHouse's Native format.

    Columns are in ``spec.columns`` order with :func:`to_row`'s values; the block is what
    clickhouse-connect's ``insert`` would send.

    Raises:
        ClickHouseError: naming the column a value does not fit.
    """
    data = list(columns)
    for j, divisor, multiplier in types.ticks:
        if divisor is not None:
            data[j] = [(d - _EPOCH) // divisor for d in data[j]]
        else:
            one = dt.timedelta(microseconds=1)
            data[j] = [(d - _EPOCH) // one * multiplier for d in data[j]]
    try:
        context = InsertContext(
            f"{database}.{spec.table}",
            spec.columns,
            types.types,
            data,
            column_oriented=True,
            block_size=max(1, len(data[0])),  # one block: no slicing into 2 MB blocks
            server_tz=client.server_tz,
        )
        chunks = list(NativeTransform.build_insert(context))
        if context.insert_exception is not None:
            raise context.insert_exception
    except Exception as exc:
        raise ClickHouseError(
            f"cannot encode rows for {database}.{spec.table}: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from None
    finally:
        # the insert context keeps ``data`` in a reference cycle until the cyclic collector
        # runs (which the sink pauses): let the columns go now
        data.clear()
    # the first block starts with the statement clickhouse-connect would send over HTTP
    chunks[0] = chunks[0][chunks[0].index(b"\n") + 1 :]
    return b"".join(chunks)


def insert_native(client: Client, database: str, spec: TableSpec, block: bytes) -> None:
    """Insert a :func:`native_block` into ``spec``'s table."""
    client.raw_insert(f"{database}.{spec.table}", spec.columns, block, fmt="Native")


def insert_columns(
    client: Client,
    database: str,
    spec: TableSpec,
    columns: Sequence[Sequence[Any]],
    types: InsertTypes,
) -> None:
    """Insert rows given as columns (``spec.columns`` order, values as :func:`to_row`'s)."""
    insert_native(client, database, spec, native_block(client, database, spec, columns, types))


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


def day_groups(
    instants: Sequence[dt.datetime], max_days: int = MAX_DAYS_PER_INSERT
) -> list[list[int]] | None:
    """Row positions grouped so that no group spans more than ``max_days`` days.

    Returns ``None`` when the rows span ``max_days`` days or fewer (one block holds them all),
    else groups of whole days, in order of the days.
    """
    days = [instant.date() for instant in instants]
    distinct = sorted(set(days))
    if len(distinct) <= max_days:
        return None
    group_of = {day: i // max_days for i, day in enumerate(distinct)}
    groups: list[list[int]] = [[] for _ in range(group_of[distinct[-1]] + 1)]
    for position, day in enumerate(days):
        groups[group_of[day]].append(position)
    return groups


def split_by_days(
    columns: Sequence[Sequence[Any]], spec: TableSpec
) -> list[Sequence[Sequence[Any]]]:
    """``columns`` as one or more column sets, each spanning at most the days one insert may."""
    groups = day_groups(columns[spec.partition_position])
    if groups is None:
        return [columns]
    return [[[column[i] for i in group] for column in columns] for group in groups]


@dataclass(frozen=True)
class _Insert:
    """One encoded block for one table."""

    event_type: type[Event]
    block: bytes


_ID_COLUMNS = ["table_name", "id", "content_sha256", "event_time"]


def _ranked(spec: TableSpec, events: DecodedBatch[Any], digests: Sequence[str]) -> list[str]:
    """The digests prefixed with each row's rank column (``joined:…``) when the table ranks."""
    if spec.ranked_by is None:
        return list(digests)
    ranks = events.columns[events.fields.index(spec.ranked_by)]
    return [f"{rank}:{d}" for rank, d in zip(ranks, digests, strict=True)]


@dataclass(frozen=True)
class _Prepared:
    """A batch ready to write: the events' blocks, then their ``event_ids`` rows."""

    inserts: list[_Insert]
    ids: list[list[Any]]


class ClickHouseSink(Sink[_Prepared]):
    """Writes events to their ClickHouse tables, one Native block per table per batch.

    Idempotent: every table is a ReplacingMergeTree on the event's natural key, read with
    ``FINAL`` (see :mod:`sinks.migrations`); an event with an identity is stored once,
    whatever its event time (:mod:`sinks.identity`).
    """

    def __init__(self, client: Client, database: str) -> None:
        super().__init__()
        self.client = client
        self.database = database
        self._types: dict[type[Event], InsertTypes] = {}
        self._ledger = IdentityLedger(client, database)

    def verdicts(self, events: DecodedBatch[Any], digests: Sequence[str]) -> list[Verdict]:
        """Each row against ``event_ids`` (and the ids this sink wrote last)."""
        spec = spec_of(events.event_type)
        if not spec.identity:
            return super().verdicts(events, digests)
        ids = row_ids(events.columns, events.fields, spec.identity)
        ranked = _ranked(spec, events, digests)
        return self._ledger.verdicts(spec.table, ids, ranked, ranked=spec.ranked_by is not None)

    def remember(self, events: DecodedBatch[Any], digests: Sequence[str]) -> None:
        """Note the rows as stored (see :class:`~sinks.identity.IdentityLedger`)."""
        spec = spec_of(events.event_type)
        if spec.identity and events.count:
            ids = row_ids(events.columns, events.fields, spec.identity)
            self._ledger.remember(spec.table, ids, _ranked(spec, events, digests))

    def conflict(self, events: DecodedBatch[Any], row: int) -> Exception:
        """``conflicting_duplicate``, naming the table and the id."""
        spec = spec_of(events.event_type)
        parts = [events.columns[events.fields.index(name)][row] for name in spec.identity]
        return conflict(spec.table, ID_SEPARATOR.join(map(str, parts)))

    def _id_rows(self, spec: TableSpec, columns: Sequence[Sequence[Any]]) -> list[list[Any]]:
        if not spec.identity:
            return []
        ids = row_ids(columns, spec.columns, spec.identity)
        times = columns[spec.partition_position]
        return [
            [spec.table, i, self._ledger.digest_of(spec.table, i), when]
            for i, when in zip(ids, times, strict=True)
        ]

    def decoder(self, event_type: type[Event]) -> BatchDecoder[Any]:
        """Decode with the table's JSON columns as JSON text (the rows of :func:`to_row`)."""
        return BatchDecoder(event_type, spec_of(event_type).json_columns)

    def encode(self, batches: dict[str, list[DecodedBatch[Any]]]) -> _Prepared:
        """One Native block per event type (the table's types are read once).

        Raises:
            ClickHouseError: the table cannot be described, or a value does not fit.
        """
        by_type: dict[type[Event], list[DecodedBatch[Any]]] = {}
        for decoded in batches.values():
            for batch in decoded:
                by_type.setdefault(batch.event_type, []).append(batch)
        inserts: list[_Insert] = []
        ids: list[list[Any]] = []
        for event_type, parts in by_type.items():
            spec = spec_of(event_type)
            columns = (
                parts[0].columns
                if len(parts) == 1
                else [
                    [v for part in parts for v in part.columns[j]] for j in range(len(spec.columns))
                ]
            )
            types = self._types.get(event_type)
            if types is None:
                types = self._types[event_type] = column_types(self.client, self.database, spec)
            for part in split_by_days(columns, spec):
                try:
                    block = native_block(self.client, self.database, spec, part, types)
                except ClickHouseError:
                    self._types.pop(event_type, None)  # the table may have changed: read again
                    raise
                inserts.append(_Insert(event_type, block))
            ids += self._id_rows(spec, columns)
        return _Prepared(inserts, ids)

    def write(self, prepared: _Prepared) -> None:
        """Insert the events' blocks, then their ``event_ids`` rows.

        In that order: a crash in between only makes the events come again, and ``FINAL``
        folds the copy.

        Raises:
            ClickHouseError: naming the table when an insert failed.
        """
        for insert in prepared.inserts:
            spec = spec_of(insert.event_type)
            try:
                insert_native(self.client, self.database, spec, insert.block)
            except Exception as exc:
                self._types.pop(insert.event_type, None)  # read the table's types again
                raise ClickHouseError(
                    f"insert into {self.database}.{spec.table} failed: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from None
        if prepared.ids:
            try:
                self.client.insert(
                    f"{self.database}.{IDS_TABLE}", prepared.ids, column_names=_ID_COLUMNS
                )
            except Exception as exc:
                raise ClickHouseError(
                    f"insert into {self.database}.{IDS_TABLE} failed: "
                    f"{type(exc).__name__}: {str(exc)[:300]}"
                ) from None
