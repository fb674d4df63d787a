"""``shadowlab rollout …`` (start, pause, resume, promote, rollback) and ``shadowlab gates status``.

A manual command writes the routing flags (who and why are recorded in them) and an
audit :class:`~schemas.Alert` of kind ``manual`` to ``gate.alerts``; the controller never
undoes it: a paused rollout is left alone, and promoted or rolled-back routes are final.
The commands and the admin API share :mod:`shadowlab.rollout_ops`.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

import typer
from confluent_kafka import Producer
from rich.console import Console
from rich.table import Table

from shadowlab.cli_flags import ActorOption, actor_name, flags_client, print_flags, settings_now
from shadowlab.cli_state import clickhouse_client
from shadowlab.core.errors import UnknownRouteError
from shadowlab.core.kafka import producer_config
from shadowlab.rollout_ops import DECISION_COLUMNS, Command, apply_manual, latest_decisions

__all__ = ["format_cell", "gates_app", "gates_table", "rollout_app"]

rollout_app = typer.Typer(
    help="Drive a rollout by hand (wins over the controller; audited).", no_args_is_help=True
)
gates_app = typer.Typer(help="Gate outcomes of a route.", no_args_is_help=True)
console = Console()

ReasonOption = Annotated[str, typer.Option("--reason", help="Why (required, recorded).")]
RouteArgument = Annotated[str, typer.Argument(help="The route.")]


def _manual(command: Command, route: str, reason: str, actor: str | None,
            candidate: str | None = None, primary: str | None = None) -> None:  # fmt: skip
    with flags_client() as (client, settings):
        producer = Producer(producer_config(settings.kafka.librdkafka(), **{"linger.ms": "0"}))
        done = apply_manual(client, producer, settings.topics.alerts, command, route,
                            reason=reason, actor=actor_name(actor), candidate=candidate,
                            primary=primary, configured=settings)  # fmt: skip
        if not done.audit_delivered:
            console.print("[yellow]warning[/yellow]: the audit alert was not delivered")
    print_flags(done.flags, done.verb)


@rollout_app.command("start")
def start(
    route: RouteArgument,
    candidate: Annotated[str, typer.Option(help="The model to roll out.")],
    reason: ReasonOption,
    primary: Annotated[
        str | None,
        typer.Option(help="The model in service (default: the flags', else the config's)."),
    ] = None,
    actor: ActorOption = None,
) -> None:
    """Begin a rollout: stage offline (the golden-set gate), then shadow, canary, promoted."""
    _manual("start", route, reason, actor, candidate=candidate, primary=primary)


@rollout_app.command("pause")
def pause(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Stop the controller from changing this rollout (gates are still evaluated)."""
    _manual("pause", route, reason, actor)


@rollout_app.command("resume")
def resume(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Hand a paused rollout back to the controller."""
    _manual("resume", route, reason, actor)


@rollout_app.command("promote")
def promote_command(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Promote the canary now (only from the canary stage: shadow cannot be skipped)."""
    _manual("promote", route, reason, actor)


@rollout_app.command("rollback")
def rollback_command(route: RouteArgument, reason: ReasonOption, actor: ActorOption = None) -> None:
    """Roll back now: everyone to the primary (override), canary weight 0."""
    _manual("rollback", route, reason, actor)


def format_cell(value: Any) -> str:
    """A table cell: ``-`` for none, 4 significant digits, minutes for instants."""
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
    console.print(gates_table(rows, f"gates of {route}"))


def gates_table(
    rows: list[dict[str, Any]], title: str, columns: tuple[str, ...] = DECISION_COLUMNS
) -> Table:
    """Gate decisions as a table, the outcome coloured (``gates status``, ``demo``)."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, justify="right" if column in ("value", "n") else "left")
    for row in rows:
        colour = _COLOUR.get(row["outcome"], "white")
        table.add_row(
            *(
                f"[{colour}]{row[c]}[/{colour}]" if c == "outcome" else format_cell(row[c])
                for c in columns
            )
        )
    return table
