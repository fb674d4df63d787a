"""The offline gate's repeated-test rule: one golden set decides a candidate once.

Re-running ``shadowlab eval`` on the same golden set until the bootstrap interval lands on the
passing side is a repeated test that the gate's 95 % does not account for. So a golden set has
an identity, :func:`golden_digest`, that every offline decision records in its audit text
(``sql``: a line ``golden-set sha256:<hex>``), and before publishing a decision for a route
and candidate :func:`earlier_runs` looks for decisions on the same set. Any earlier one
refuses the new decision (:func:`rerun_policy`) unless a reason is given; a re-run with a
reason is published with the reason, the actor and the count of earlier runs in its audit
text (:func:`audit_lines`), and raises a ``manual`` alert (:func:`rerun_alert`).

The matcher and the threshold are not part of the identity: changing either to get a pass on
the same items is the same repeated test.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from processors.evaluation.golden import GoldenItem
from processors.gates.queries import OFFLINE_DECISION_PREFIX
from schemas import Alert, GateDecision
from shadowlab.core.errors import ConfigError, GoldenSetReusedError

#: How an offline decision's audit text (``sql``) names its golden set.
DIGEST_LABEL = "golden-set sha256:"
#: The longest ``--rerun-reason`` (it goes into the decision's audit text and an alert).
MAX_REASON_CHARS = 1000


def golden_digest(items: Sequence[GoldenItem]) -> str:
    """The golden set's identity: the SHA-256 (hex) of its normalised items.

    Normalised: each item as parsed (defaults filled in) as compact JSON with sorted keys,
    the items sorted by id, one per line, UTF-8. So the digest is of the items evaluated, not
    of the file's bytes: reordering lines or keys, reformatting, adding blank lines or lines
    that are skipped as malformed leaves it unchanged; any change to an item's question,
    keywords, context or expected answer, or adding or removing an item, makes a new set.
    """
    lines = sorted(
        (item.id, json.dumps(item.model_dump(mode="json"), sort_keys=True,
                             ensure_ascii=False, separators=(",", ":")))
        for item in items
    )  # fmt: skip
    return hashlib.sha256("\n".join(line for _, line in lines).encode("utf-8")).hexdigest()


def digest_line(digest: str) -> str:
    """The audit-text line that names the golden set of an offline decision."""
    return f"{DIGEST_LABEL}{digest}"


@dataclass(frozen=True)
class EarlierRun:
    """An offline decision already published on the same golden set."""

    decision_id: str
    decided_at: dt.datetime
    outcome: str
    value: float | None

    def __str__(self) -> str:
        ratio = f", ratio {self.value:.3f}" if self.value is not None else ""
        return (
            f"{self.decision_id} decided {self.decided_at:%Y-%m-%d %H:%M:%S} UTC: "
            f"{self.outcome}{ratio}"
        )


@dataclass(frozen=True)
class Rerun:
    """A re-run on a golden set already used, on the record."""

    reason: str
    actor: str
    #: The offline decisions already published on this set for this route and candidate.
    earlier: int
    #: The newest of them.
    last: EarlierRun


def earlier_runs(
    client: Client, database: str, *, route: str, candidate: str, digest: str
) -> list[EarlierRun]:
    """The offline decisions for ``route`` and ``candidate`` on golden set ``digest``.

    Oldest first, from ``gate_decisions FINAL`` (a decision stored twice counts once).
    Decisions published before golden sets had a digest carry none and are not found.
    """
    rows = client.query(
        f"SELECT decision_id, decided_at, outcome, value FROM {database}.gate_decisions FINAL "  # noqa: S608 - the checked database name; values are bound
        "WHERE route = {route:String} AND stage = 'offline' AND candidate = {candidate:String} "
        "AND startsWith(decision_id, {prefix:String}) AND position(sql, {line:String}) > 0 "
        "ORDER BY decided_at, decision_id",
        parameters={"route": route, "candidate": candidate, "prefix": OFFLINE_DECISION_PREFIX,
                    "line": digest_line(digest)},
    ).result_rows  # fmt: skip
    return [
        EarlierRun(str(i), at.astimezone(dt.UTC), str(o), None if v is None else float(v))
        for i, at, o, v in rows
    ]


def rerun_policy(
    earlier: Sequence[EarlierRun], *, route: str, candidate: str, digest: str,
    golden_file: str, reason: str | None, actor: str,
) -> Rerun | None:  # fmt: skip
    """Whether a new offline decision on this golden set may be published.

    Returns:
        ``None`` for a first run (``reason`` is not needed, and ignored), else the re-run to
        record.

    Raises:
        GoldenSetReusedError: the set was used before and no (non-blank) ``reason`` is given:
            the message names the newest earlier decision and what to do.
        ConfigError: ``reason`` is longer than :data:`MAX_REASON_CHARS`.
    """
    if not earlier:
        return None
    last = earlier[-1]
    text = (reason or "").strip()
    if not text:
        before = f" ({len(earlier)} decisions on it so far)" if len(earlier) > 1 else ""
        raise GoldenSetReusedError(
            f"golden set {golden_file} (sha256 {digest[:12]}) already decided the offline gate "
            f"of route {route!r}, candidate {candidate!r}: {last}{before}. Re-running the same "
            "set until it passes is a repeated test the gate does not allow for: evaluate on a "
            'new golden set, or pass --rerun-reason "WHY" to publish a re-run on the record'
        )
    if len(text) > MAX_REASON_CHARS:
        raise ConfigError(
            f"--rerun-reason has {len(text)} characters; keep it under {MAX_REASON_CHARS}"
        )
    return Rerun(reason=text, actor=actor, earlier=len(earlier), last=last)


def audit_lines(digest: str, items: int, rerun: Rerun | None) -> list[str]:
    """The lines of an offline decision's audit text about its golden set and any re-run."""
    lines = [f"{digest_line(digest)} ({items} items)"]
    if rerun is not None:
        lines.append(
            f"re-run: {rerun.earlier} earlier run(s) on this golden set, newest {rerun.last}; "
            f"by {rerun.actor}; reason: {rerun.reason}"
        )
    return lines


def rerun_alert(decision: GateDecision, rerun: Rerun) -> Alert:
    """The ``manual`` alert that puts a re-run offline decision in front of on-call."""
    message = (
        f"{decision.route}: offline gate re-run on a used golden set "
        f"({rerun.earlier} earlier run(s), newest {rerun.last.outcome}) for "
        f"{decision.candidate}: {decision.outcome}, by {rerun.actor}: {rerun.reason}"
    )
    return Alert(
        alert_id=f"manual-rerun-{decision.decision_id}"[:128],
        route=decision.route,
        kind="manual",
        severity="warning",
        event_time=decision.decided_at,
        message=message[:2000],
        gate=decision.gate,
        decision_id=decision.decision_id,
    )
