"""Manual rollout commands and gate status: one function each, for the CLI and the admin API.

``shadowlab rollout start|pause|resume|promote|rollback`` and ``POST /rollout/{route}/{command}``
both call :func:`apply_manual`: it computes the change with the pure functions of
:mod:`shadowlab.core.flags`, writes the flags (who and why are recorded in them) and an audit
:class:`~schemas.Alert` of kind ``manual`` to the alerts topic. ``shadowlab gates status``
and ``GET /gates/{route}`` both read :func:`latest_decisions`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

from schemas import Alert, RoutingFlags
from shadowlab.core.errors import InvalidFlagsChangeError
from shadowlab.core.flags import promote, rollback, set_paused, start_rollout

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client
    from confluent_kafka import Producer

    from shadowlab.core.flags_io import FlagsClient
    from shadowlab.core.settings import Settings

Command = Literal["start", "pause", "resume", "promote", "rollback"]
#: The manual commands, in the order of a rollout's life.
COMMANDS: tuple[Command, ...] = get_args(Command)
#: What each command did, for messages: "faq: paused by alice: …".
VERBS: dict[Command, str] = {
    "start": "started rollout of",
    "pause": "paused",
    "resume": "resumed",
    "promote": "promoted",
    "rollback": "rolled back",
}


def manual_change(
    command: Command,
    current: RoutingFlags | None,
    *,
    route: str,
    reason: str,
    actor: str,
    now: dt.datetime,
    candidate: str | None = None,
    primary: str | None = None,
) -> RoutingFlags:
    """Return the flags after ``command`` (pure: nothing is written).

    Args:
        command: one of :data:`COMMANDS`.
        current: the flags in force (``None``: the route has none yet).
        route: the route.
        reason: why (required, recorded in the flags and the audit alert).
        actor: who.
        now: the wall-clock time of the change.
        candidate: the model to roll out (``start`` only, required there).
        primary: the model in service (``start`` only; default: the flags' primary; needed
            when the route has no flags).

    Raises:
        InvalidFlagsChangeError: no reason, no candidate for ``start``, or a change the
            rollout's stage does not allow (e.g. promote outside canary).
        UnknownRouteError: the route has no flags (every command but ``start``).
    """
    if not reason.strip():
        raise InvalidFlagsChangeError(
            f"a {command} needs a reason (why, recorded in the flags and the audit alert)"
        )
    if command == "start":
        if not candidate:
            raise InvalidFlagsChangeError("a start needs the candidate model to roll out")
        if primary is None and current is None:
            raise InvalidFlagsChangeError(
                f"route {route!r} has no flags and is not under `routes` in the config: give "
                'the model it runs now as the primary (--primary, or "primary" in the API)'
            )
        return start_rollout(
            current,
            route=route,
            candidate=candidate,
            primary=primary,
            actor=actor,
            reason=reason,
            now=now,
        )
    if command in ("pause", "resume"):
        return set_paused(
            current, route=route, paused=command == "pause", actor=actor, reason=reason, now=now
        )
    if command == "promote":
        return promote(current, route=route, actor=actor, reason=reason, now=now)
    if command == "rollback":
        return rollback(current, route=route, actor=actor, reason=reason, now=now)
    raise InvalidFlagsChangeError(f"unknown rollout command {command!r}; use {', '.join(COMMANDS)}")


def audit_alert(flags: RoutingFlags, command: Command, actor: str, reason: str) -> Alert:
    """The ``manual`` alert that records a command in ``gate.alerts``."""
    return Alert(
        alert_id=f"manual-{uuid.uuid4().hex}",
        route=flags.route,
        kind="manual",
        severity="warning" if command in ("rollback", "pause") else "info",
        event_time=flags.changed_at,
        message=f"{flags.route}: {VERBS[command]} by {actor}: {reason}"[:2000],
        flags_version=flags.version,
    )


@dataclass(frozen=True)
class ManualChange:
    """What :func:`apply_manual` did."""

    command: Command
    flags: RoutingFlags
    #: The audit alert reached Kafka (the flags change stands either way).
    audit_delivered: bool

    @property
    def verb(self) -> str:
        """What the command did, e.g. ``rolled back``."""
        return VERBS[self.command]


def apply_manual(
    flags: FlagsClient,
    producer: Producer,
    alerts_topic: str,
    command: Command,
    route: str,
    *,
    reason: str,
    actor: str,
    candidate: str | None = None,
    primary: str | None = None,
    configured: Settings | None = None,
    now: dt.datetime | None = None,
    audit_timeout_s: float = 10.0,
) -> ManualChange:
    """Apply a manual command: write the new flags, then the audit alert.

    Args:
        flags: a flags client on the flags topic (caught up).
        producer: a producer for the audit alert.
        alerts_topic: the alerts topic (``topics.alerts``).
        command: one of :data:`COMMANDS`.
        route: the route.
        reason: why (required).
        actor: who.
        candidate: the model to roll out (``start``).
        primary: the model in service (``start``; default: the flags' primary, else the
            route's ``primary`` in ``configured``).
        configured: the settings, whose ``routes`` give a route without flags its primary.
        now: the time of the change (default: now, UTC).
        audit_timeout_s: how long to wait for the audit alert's delivery.

    Raises:
        InvalidFlagsChangeError: see :func:`manual_change`.
        UnknownRouteError: the route has no flags (every command but ``start``).
        FlagsConflictError: another writer changed the route's flags first.
        TimeoutError: the flags change could not be written or read back in time.
    """
    current = flags.current(route)
    if command == "start" and primary is None and current is None and configured is not None:
        primary = next((r.primary for r in configured.routes if r.name == route), None)
    new = manual_change(
        command,
        current,
        route=route,
        reason=reason,
        actor=actor,
        now=now or dt.datetime.now(dt.UTC),
        candidate=candidate,
        primary=primary,
    )
    written = flags.publish(new)
    audit = audit_alert(written, command, actor, reason)
    producer.produce(alerts_topic, key=route, value=audit.to_json())
    delivered = producer.flush(audit_timeout_s) == 0
    return ManualChange(command, written, delivered)


_LATEST = """SELECT stage, gate, outcome, value, baseline, threshold, ci_low, ci_high, n,
    decided_at, action, flags_version, margin, needed_n, eta_h
FROM (SELECT * FROM {db}.gate_decisions FINAL
      WHERE route = {route:String} AND NOT startsWith(decision_id, 'eval-')
      ORDER BY decided_at DESC LIMIT 1 BY stage, gate)
ORDER BY indexOf(['offline', 'shadow', 'canary'], stage), gate"""
#: The columns of a :func:`latest_decisions` row, in display order.
DECISION_COLUMNS = ("stage", "gate", "outcome", "value", "baseline", "threshold", "ci_low",
                    "ci_high", "n", "decided_at", "action", "flags_version", "margin",
                    "needed_n", "eta_h")  # fmt: skip


def latest_decisions(client: Client, database: str, route: str) -> list[dict[str, Any]]:
    """Each gate's latest decision for ``route`` (one dict per stage and gate)."""
    rows = client.query(_LATEST.replace("{db}", database), parameters={"route": route})
    return [dict(zip(DECISION_COLUMNS, row, strict=True)) for row in rows.result_rows]
