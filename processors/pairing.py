"""The join's state machine, as pure functions over one request's entry.

The join role keeps one entry per ``request_id`` in a faust table (a JSON-able dict) and
calls these functions with the entry, the event and the wall-clock time; each returns the
new entry (``None``: delete it) and the comparisons to emit. No I/O here.

Life of an entry::

    shadow first ──► held ──┐
                            ├─ request arrives ─► open: one ``joined`` per candidate that
    request first ──────────┘                     arrives, ``missing`` for each expected one
                                                  still absent after ``window_s``
    open ── all expected joined, or window over ─► closed (a small tombstone)
    closed ── after ``retention_s`` ─► deleted

An entry holds each side's :class:`~processors.compare.AnswerDigest`, never a whole answer, so
it stays small (far below Kafka's message limit on the table's changelog) however long the
answers are.

The tombstone makes redelivery harmless: Kafka delivery is at-least-once, and a request or a
result seen again after its entry closed changes nothing (no second ``missing``). A candidate
result that arrives after its ``missing`` was emitted, while the tombstone lasts, is joined
late: the tombstone of an entry with missing candidates keeps the primary side, and the
``joined`` comparison emitted then supersedes the ``missing`` one in storage (the sink stores a
``joined`` over a ``missing``, never the reverse), so a restart or a lagging shadow role costs
latency, not data. A result whose request never arrives is dropped as an orphan after
``orphan_window_s``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from processors.compare import CandidateAnswer, PrimaryAnswer, compare, missing
from schemas import Comparison, RequestEvent, ShadowResult

Entry = dict[str, Any]
#: What happened to an event, for counters: joined, held, late, duplicate, missing, orphan.
Outcome = Literal[
    "joined", "held", "waiting", "late", "duplicate", "closed", "orphan", "unexpected"
]


@dataclass
class Step:
    """The new entry (``None`` deletes it) and what to emit."""

    entry: Entry | None
    comparisons: list[Comparison] = field(default_factory=list)
    outcome: Outcome = "waiting"


def _closed(
    now: float, done: list[str], absent: list[str] | None = None, primary: Any = None
) -> Entry:
    closed: Entry = {"closed": now, "done": done, "missing": absent or []}
    if absent and primary is not None:  # kept to join a late result
        closed["primary"] = primary
    return closed


def on_request(entry: Entry | None, event: RequestEvent, expected: list[str], now: float) -> Step:
    """A request arrived: join the results held for it; wait for the other expected ones."""
    if entry is not None and ("closed" in entry or "primary" in entry):
        return Step(entry, outcome="duplicate")
    primary = PrimaryAnswer.of(event)
    held: dict[str, Any] = (entry or {}).get("held", {})
    comparisons = [compare(primary, CandidateAnswer.kept(c)) for c in held.values()]
    done = sorted(held)
    if all(c in held for c in expected):
        return Step(_closed(now, done), comparisons, "joined" if comparisons else "closed")
    opened: Entry = {
        "seen": (entry or {}).get("seen", now),
        "primary": primary.model_dump(mode="json"),
        "expected": sorted(expected),
        "done": done,
    }
    return Step(opened, comparisons, "joined" if comparisons else "waiting")


def on_shadow(entry: Entry | None, result: ShadowResult, now: float) -> Step:
    """A candidate's result arrived: join it now, or hold it (its digest) for its request."""
    candidate = result.candidate
    if entry is None or "held" in entry:
        held = dict((entry or {}).get("held", {}))
        if candidate in held:
            return Step(entry, outcome="duplicate")
        held[candidate] = CandidateAnswer.of(result).model_dump(mode="json")
        return Step({"seen": (entry or {}).get("seen", now), "held": held}, outcome="held")
    if candidate in entry["done"]:
        return Step(entry, outcome="duplicate")
    if "closed" in entry:
        return _late(entry, result)
    primary = PrimaryAnswer.model_validate(entry["primary"])
    done = sorted([*entry["done"], candidate])
    comparison = compare(primary, result)
    if all(c in done for c in entry["expected"]):
        return Step(_closed(now, done), [comparison], "joined")
    return Step({**entry, "done": done}, [comparison], "joined")


def _late(entry: Entry, result: ShadowResult) -> Step:
    """A result after its ``missing`` was emitted: joined now, if the primary is kept."""
    candidate = result.candidate
    if candidate not in entry["missing"]:
        # the request was closed without expecting this candidate: the stage moved on (say,
        # to promoted) between the shadow's replay and the join's reading of the request.
        # Counted apart from duplicates, so a result that was paid for is never silently gone
        return Step(entry, outcome="unexpected")
    if "primary" not in entry:
        return Step(entry, outcome="duplicate")
    primary = PrimaryAnswer.model_validate(entry["primary"])
    absent = [c for c in entry["missing"] if c != candidate]
    done = sorted([*entry["done"], candidate])
    late = _closed(entry["closed"], done, absent, entry["primary"])
    return Step(late, [compare(primary, result)], "late")


def on_tick(
    entry: Entry,
    now: float,
    window_s: float,
    orphan_window_s: float,
    retention_s: float,
    since: float = 0.0,
) -> Step:
    """Time passed: emit ``missing`` for an open entry past its window; drop old entries.

    ``since`` is when the join (re)started: time the role was down does not count against
    a window, so an entry restored after a restart gets its full window again.
    """
    if "closed" in entry:
        expired = now - entry["closed"] >= retention_s
        return Step(None if expired else entry, outcome="closed")
    age = now - max(entry["seen"], since)
    if "held" in entry:
        if age >= orphan_window_s:
            return Step(None, outcome="orphan")
        return Step(entry, outcome="held")
    if age < window_s:
        return Step(entry)
    primary = PrimaryAnswer.model_validate(entry["primary"])
    absent = [c for c in entry["expected"] if c not in entry["done"]]
    return Step(
        _closed(now, entry["done"], absent, entry["primary"]),
        [missing(primary, c) for c in absent],
        "closed",
    )
