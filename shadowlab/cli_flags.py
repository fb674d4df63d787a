"""``shadowlab flags …``: show and change routing flags on the ``routing.flags`` topic."""

from __future__ import annotations

import datetime as dt
import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Protocol

import typer
from rich.console import Console
from rich.table import Table

from schemas import RoutingFlags
from shadowlab.cli_state import current_settings
from shadowlab.core.errors import ConfigError, UnknownRouteError
from shadowlab.core.flags import clear_override, rollback, set_flags, weight_bp
from shadowlab.core.flags_io import FlagsClient, flags_options
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.settings import Settings

flags_app = typer.Typer(help="Routing flags: show, set, roll back.", no_args_is_help=True)
console = Console()


class FlagsChange(Protocol):
    """A one-route change of the flags in force (``rollback``, ``clear_override``)."""

    def __call__(
        self, current: RoutingFlags | None, *, route: str, actor: str, reason: str, now: dt.datetime
    ) -> RoutingFlags:
        """The route's new flags."""
        ...


ActorOption = Annotated[
    str | None, typer.Option("--actor", help="Who makes the change (default: the OS user).")
]


def settings_now() -> Settings:
    """The settings of this invocation (``--config`` and the environment)."""
    return current_settings()


@contextmanager
def flags_client() -> Iterator[tuple[FlagsClient, Settings]]:
    """A flags client on the configured Kafka (topic created if missing), and the settings."""
    settings = settings_now()
    if not settings.kafka.bootstrap_servers:
        raise ConfigError(
            "flags live on Kafka: set SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS (for the embedded "
            "broker, the address `shadowlab broker` printed)"
        )
    connection = settings.kafka.librdkafka()
    ensure_topics(
        connection,
        {settings.topics.flags: settings.topics.flags_partitions},
        replication_factor=settings.topics.replication(),
        configs=settings.topics.configs_of(),
    )
    with FlagsClient(connection, settings.topics.flags, **flags_options(settings)) as client:
        yield client, settings


def actor_name(actor: str | None) -> str:
    """Who makes a change: ``--actor``, else the OS user."""
    return actor or getpass.getuser()


def utc_now() -> dt.datetime:
    """The wall-clock time, timezone-aware (UTC)."""
    return dt.datetime.now(dt.UTC)


def _table(rows: list[RoutingFlags], title: str) -> Table:
    table = Table(title=title)
    for column in (
        "route",
        "version",
        "stage",
        "primary",
        "canary",
        "weight",
        "override",
        "changed",
        "by",
        "reason",
    ):
        table.add_column(column)
    for f in rows:
        table.add_row(
            f.route,
            str(f.version),
            f.stage,
            f.primary,
            f.canary or "-",
            f"{f.canary_weight_bp / 100:g}%",
            f.override or "-",
            f.changed_at.strftime("%Y-%m-%d %H:%M:%S"),
            f.changed_by,
            f.reason,
        )
    return table


def print_flags(flags: RoutingFlags, action: str) -> None:
    """Print one line saying what a change did."""
    console.print(
        f"{action} [bold]{flags.route}[/bold] → version {flags.version}: primary "
        f"{flags.primary}, canary {flags.canary or '-'} at {flags.canary_weight_bp / 100:g}%, "
        f"override {flags.override or '-'}"
    )


@flags_app.command("show")
def show(
    route: Annotated[str | None, typer.Argument(help="One route (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the flags in force."""
    with flags_client() as (client, _):
        flags = client.all()
    if route is not None:
        if route not in flags:
            raise UnknownRouteError(
                f"route {route!r} has no flags (routes: {', '.join(sorted(flags)) or 'none'})"
            )
        flags = {route: flags[route]}
    if as_json:
        console.print_json(json.dumps([json.loads(f.to_json()) for f in flags.values()]))
    else:
        console.print(_table(sorted(flags.values(), key=lambda f: f.route), "routing flags"))


@flags_app.command("set")
def set_(
    route: Annotated[str, typer.Argument(help="The route.")],
    primary: Annotated[str, typer.Option(help="The model everyone gets by default.")],
    canary: Annotated[str | None, typer.Option(help="The candidate model.")] = None,
    weight: Annotated[float, typer.Option(help="Canary share, percent (0-100).")] = 0.0,
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    actor: ActorOption = None,
) -> None:
    """Set primary, canary and canary weight (clears any override)."""
    with flags_client() as (client, settings):
        current = client.current(route)
        known = {r.name for r in settings.routes}
        if current is None and route not in known:
            raise UnknownRouteError(
                f"unknown route {route!r}: it has no flags and is not under `routes` in the "
                f"config (configured: {', '.join(sorted(known)) or 'none'}); add it there first"
            )
        new = set_flags(
            current,
            route=route,
            primary=primary,
            canary=canary,
            canary_weight_bp=weight_bp(weight),
            actor=actor_name(actor),
            reason=reason,
            now=utc_now(),
        )
        print_flags(client.publish(new), "set")


def _publish_change(
    change: FlagsChange, route: str, reason: str, actor: str | None, verb: str
) -> None:
    """Apply a one-route ``change`` (rollback, clear override) to the flags in force; publish."""
    with flags_client() as (client, _):
        new = change(
            client.current(route),
            route=route,
            actor=actor_name(actor),
            reason=reason,
            now=utc_now(),
        )
        print_flags(client.publish(new), verb)


@flags_app.command("rollback")
def rollback_command(
    route: Annotated[str, typer.Argument(help="The route.")],
    reason: Annotated[str, typer.Option(help="Why (required, recorded).")],
    actor: ActorOption = None,
) -> None:
    """Send everyone to the primary now: override = primary, canary weight 0, one write."""
    _publish_change(rollback, route, reason, actor, "rolled back")


@flags_app.command("clear-override")
def clear_override_command(
    route: Annotated[str, typer.Argument(help="The route.")],
    reason: Annotated[str, typer.Option(help="Why (recorded).")] = "",
    actor: ActorOption = None,
) -> None:
    """Remove the override (routing follows primary/canary weights again)."""
    _publish_change(clear_override, route, reason, actor, "cleared override of")


@flags_app.command("history")
def history(
    route: Annotated[str, typer.Argument(help="The route.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every version of a route's flags: who changed what, when and why."""
    with flags_client() as (client, _):
        rows = client.history(route)
    if not rows:
        raise UnknownRouteError(f"route {route!r} has no flags history")
    if as_json:
        console.print_json(json.dumps([json.loads(f.to_json()) for f in rows]))
    else:
        console.print(_table(rows, f"history of {route}"))
