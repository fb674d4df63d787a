"""One event per id, whatever its event time: the sink's identity check.

The event tables (``ReplacingMergeTree``) are sorted by ``(route, event_time, id)`` for the
gates' time-range scans, so ``FINAL`` folds two copies of an id only when their event times
(and partitions) agree. The sink therefore keeps, in ``event_ids`` (sorted by
``(table_name, id)``, one small row per event: id, SHA-256 of the message bytes, event time),
what it stored, and checks each batch against it before writing:

- an id never seen is stored, and its row added to ``event_ids`` (after the event's own
  block, so a crash in between only makes the event come again, same bytes, and be folded);
- an id seen with the same bytes is a retry or a redelivery: dropped, counted;
- an id seen with other bytes is a ``conflicting_duplicate``: dead-lettered, the first stays.

A comparison is ranked by its status: a ``joined`` one supersedes a stored ``missing`` one
(a shadow result that came after the join window), and a ``missing`` one after a ``joined``
is dropped, whatever the order they arrive in; its digest is ``<status>:<sha256>``.

Tables whose later event is meant to replace the earlier one (``gate_decisions``: a re-decided
tick; ``alerts``) have no identity and are not checked. Rows migrated from before this table
existed carry an empty digest, which matches anything (the old row stays; nothing is lost).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clickhouse_connect.driver.client import Client

from shadowlab.core.errors import ClickHouseError, ShadowlabError
from sinks.base import Verdict

#: Joins the parts of a composite id (``request_id`` and ``candidate``…).
ID_SEPARATOR = "\x1f"
#: The ``event_ids`` table.
IDS_TABLE = "event_ids"
#: Ids a sink remembers in memory (the ones it wrote last), besides the table.
RECENT_IDS = 500_000


class ConflictingDuplicateError(ShadowlabError, ValueError):
    """An event reuses the id of a stored event with other content (``conflicting_duplicate``)."""


def digest(value: bytes | None) -> str:
    """The SHA-256 (hex) of a message's bytes: what makes two copies "the same"."""
    return hashlib.sha256(value or b"").hexdigest()


def row_ids(
    columns: Sequence[Sequence[Any]], fields: Sequence[str], identity: Sequence[str]
) -> list[str]:
    """Each row's id: its identity columns' values joined by :data:`ID_SEPARATOR`."""
    parts = [columns[fields.index(name)] for name in identity]
    return [ID_SEPARATOR.join(map(str, values)) for values in zip(*parts, strict=True)]


#: The ranks of a ranked digest's prefix (comparisons: their status).
RANKS = {"missing": 0, "joined": 1}


def fate(first: str, seen: str, *, ranked: bool = False) -> Verdict:
    """A row with digest ``seen`` whose id is stored with digest ``first``.

    An empty stored digest (a row backfilled by the migration) matches any content.
    """
    if ranked:
        first_rank, _, first = first.partition(":")
        seen_rank, _, seen = seen.partition(":")
        if first_rank != seen_rank:  # a joined comparison supersedes a missing one, not back
            return "new" if RANKS.get(seen_rank, 0) > RANKS.get(first_rank, 0) else "retry"
    return "retry" if first in ("", seen) else "conflict"


def conflict(table: str, event_id: str) -> ConflictingDuplicateError:
    """The dead-letter reason of an id stored before with other content."""
    shown = event_id.replace(ID_SEPARATOR, " / ")
    return ConflictingDuplicateError(
        f"conflicting_duplicate: {table} already holds {shown!r} with other content; the "
        "first is kept. Send a new id for a new event (a retry must resend the same bytes)"
    )


@dataclass
class IdentityLedger:
    """What a sink stored, by table and id: memory for the recent ids, ``event_ids`` for all."""

    client: Client
    database: str

    def __post_init__(self) -> None:
        self._recent: OrderedDict[tuple[str, str], str] = OrderedDict()

    def verdicts(
        self, table: str, ids: Sequence[str], digests: Sequence[str], *, ranked: bool = False
    ) -> list[Verdict]:
        """Each row's fate against what is stored and the rows before it (nothing is noted).

        ``ranked``: digests are ``<rank name>:<sha256>`` and a higher rank supersedes.
        """
        unknown = sorted({i for i in ids if (table, i) not in self._recent})
        known = self._lookup(table, unknown) if unknown else {}
        known.update({i: self._recent[(table, i)] for i in ids if (table, i) in self._recent})
        out: list[Verdict] = []
        for event_id, seen_digest in zip(ids, digests, strict=True):
            first = known.get(event_id)
            verdict = "new" if first is None else fate(first, seen_digest, ranked=ranked)
            if verdict == "new":
                known[event_id] = seen_digest  # a later row of this batch is judged against it
            out.append(verdict)
        return out

    def remember(self, table: str, ids: Sequence[str], digests: Sequence[str]) -> None:
        """Note new ids as stored (their ``event_ids`` rows follow with their events)."""
        for event_id, seen_digest in zip(ids, digests, strict=True):
            self._recent[(table, event_id)] = seen_digest
        while len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)

    def digest_of(self, table: str, event_id: str) -> str:
        """The digest remembered for an id (what ``event_ids`` gets)."""
        return self._recent.get((table, event_id), "")

    def _lookup(self, table: str, ids: list[str]) -> dict[str, str]:
        try:
            rows = self.client.query(
                f"SELECT id, content_sha256 FROM {self.database}.{IDS_TABLE} FINAL "  # noqa: S608
                "WHERE table_name = {table:String} AND id IN {ids:Array(String)}",
                parameters={"table": table, "ids": ids},
            ).result_rows
        except Exception as exc:  # the driver's own errors: the sink retries the batch
            raise ClickHouseError(
                f"cannot read {self.database}.{IDS_TABLE}: {type(exc).__name__}: {str(exc)[:300]}"
            ) from None
        return {str(row[0]): str(row[1]) for row in rows}


__all__ = [
    "IDS_TABLE",
    "ID_SEPARATOR",
    "ConflictingDuplicateError",
    "IdentityLedger",
    "conflict",
    "digest",
    "fate",
    "row_ids",
]
