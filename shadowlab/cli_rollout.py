"""``shadowlab rollout …`` (start, pause, resume, promote, rollback) and ``shadowlab gates status``.

A manual command writes the routing flags (who and why are recorded in them) and an
audit :class:`~schemas.Alert` of kind ``manual`` to ``gate.alerts``; the controller never
undoes it: a paused rollout is left alone, and promoted or rolled-back routes are final.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable
from typing import Annotated, Any

import typer
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from producers.flags import promote, rollback, set_paused, start_rollout
from schemas import Alert, RoutingFlags
from shadowlab.cli_flags import (
    ActorOption,
    actor_name,
    flags_client,
    print_flags,
    settings_now,
    utc_now,
)
from shadowlab.exceptions import UnknownRouteError
from shadowlab.kafka import producer_config

rollout_app = typer.Typer(
    help="Drive a rollout by hand (wins over the controller; audited).", no_args_is_help=True
)
gates_app = typer.Typer(help="Gate outcomes of a route.", no_args_is_help=True)
console = Console()

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (required, recorded).")]
RouteArgument = Annotated[str, typer.Argument(help="The route.")]


def _manual(route: str, change: Callable[[RoutingFlags | None, str], RoutingFlags], verb: str,
            reason: str, actor: str | None) -> None:  # fmt: skip
    who = actor_name(actor)
    with flags_client() as (client, settings):
        new = client.publish(change(client.current(route), who))
        audit = Alert(
            alert_id=f"manual-{uuid.uuid4().hex}",
            route=route,
            kind="manual",
            severity="warning" if verb in ("rolled back", "paused") else "info",
            event_time=utc_now(),
            message=f"{route}: {verb} by {who}: {reason}"[:2000],
            flags_version=new.version,
        )
        producer = Producer(producer_config(settings.kafka.librdkafka(), **{"linger.ms": "0"}))
        producer.produce(settings.topics.alerts, key=route, value=audit.to_json())
        if producer.flush(10) > 0:
            console.print("[yellow]warning[/yellow]: the audit alert was not delivered")
    print_flags(new, verb)


@rollout_app.command("start")
def start(
    route: RouteArgument,
    candidate: Annotated[str, typer.Option(help="The model to roll out.")],
    reason: ReasonOption,
    primary: Annotated[
        str | None, typer.Option(help="The model in service (default: the flags' primary).")
    ] = None,
    actor: ActorOption = None,
) -> None:
    """Begin a rollout: stage offline (the golden-set gate), then shadow, canary, promoted."""
    _manual(route, lambda cur, who: start_rollout(cur, route=route, candidate=candidate,
            primary=primary, actor=who, reason=reason, now=utc_now()), "started rollout of",
            reason, actor)  # fmt: skip


@rollout_app.command("pause")
def pause(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Stop the controller from changing this rollout (gates are still evaluated)."""
    _manual(route, lambda cur, who: set_paused(cur, route=route, paused=True, actor=who,
            reason=reason, now=utc_now()), "paused", reason, actor)  # fmt: skip


@rollout_app.command("resume")
def resume(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Hand a paused rollout back to the controller."""
    _manual(route, lambda cur, who: set_paused(cur, route=route, paused=False, actor=who,
            reason=reason, now=utc_now()), "resumed", reason, actor)  # fmt: skip


@rollout_app.command("promote")
def promote_(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Promote the canary now (only from the canary stage: shadow cannot be skipped)."""
    _manual(route, lambda cur, who: promote(cur, route=route, actor=who, reason=reason,
            now=utc_now()), "promoted", reason, actor)  # fmt: skip


@rollout_app.command("rollback")
def rollback_(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Roll back now: everyone to the primary (override), canary weight 0."""
    _manual(route, lambda cur, who: rollback(cur, route=route, actor=who, reason=reason,
            now=utc_now()), "rolled back", reason, actor)  # fmt: skip


_LATEST = """SELECT stage, gate, argMax(outcome, decided_at), argMax(value, decided_at),
    argMax(baseline, decided_at), argMax(threshold, decided_at), argMax(ci_low, decided_at),
    argMax(ci_high, decided_at), argMax(n, decided_at), max(decided_at),
    argMax(action, decided_at), argMax(flags_version, decided_at)
FROM {db}.gate_decisions FINAL
WHERE route = {route:String} AND NOT startsWith(decision_id, 'eval-')
GROUP BY stage, gate ORDER BY indexOf(['offline', 'shadow', 'canary'], stage), gate"""
_COLUMNS = ("stage", "gate", "outcome", "value", "baseline", "threshold", "ci_low", "ci_high",
            "n", "decided_at", "action", "flags_version")  # fmt: skip


def latest_decisions(client: Any, database: str, route: str) -> list[dict[str, Any]]:
    """Each gate's latest decision for ``route`` (one dict per stage and gate)."""
    rows = client.query(_LATEST.replace("{db}", database), parameters={"route": route})
    return [dict(zip(_COLUMNS, row, strict=True)) for row in rows.result_rows]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


_COLOUR = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


@gates_app.command("status")
def status(
    route: RouteArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each gate's latest outcome, value, baseline, threshold, interval and n."""
    from shadowlab.cli import clickhouse_client  # noqa: PLC0415 - avoids an import cycle

    settings = settings_now()
    with clickhouse_client(settings) as client:
        rows = latest_decisions(client, settings.clickhouse.database, route)
    if not rows:
        raise UnknownRouteError(
            f"no gate decisions for route {route!r} yet; is `shadowlab run gates` running, "
            "and is a rollout started (`shadowlab rollout start`)?"
        )
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=f"gates of {route}")
    for column in _COLUMNS:
        table.add_column(column, justify="right" if column in ("value", "n") else "left")
    for row in rows:
        cells = [_fmt(row[c]) for c in _COLUMNS]
        colour = _COLOUR.get(row["outcome"], "white")
        cells[2] = f"[{colour}]{cells[2]}[/{colour}]"
        table.add_row(*cells)
    console.print(table)
