"""``shadowlab up``: every role in one process, plus the admin HTTP API.

``up`` is the single-host shape (a laptop, a demo, a small install): it starts the embedded
Kafka broker and the in-process ClickHouse engine when none is configured (chDB allows one
engine path per process, so the roles that need ClickHouse must share one process anyway),
creates the topics, migrates, runs the roles in threads (:class:`~shadowlab.roles.RoleSet`)
and serves the admin API (:mod:`shadowlab.admin`). The production shape is one container per
role (``shadowlab run ROLE``, see docker-compose.yml).

A role that fails is logged and reported by ``/health`` (503) and ``shadowlab_role_up``;
``up`` keeps serving the others, so the API stays available to look at what happened and to
roll back by hand. Restart ``up`` (or let a supervisor do it on the 503) to restart the role.
SIGTERM or Ctrl-C stops every role after its current batch, then the API, and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shadowlab.cli_state import console, current_settings, err_console, use_config
from shadowlab.core.errors import ConfigError
from shadowlab.core.settings import Settings
from shadowlab.roles import ROLE_NAMES

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from shadowlab.roles import RoleSet

log = logging.getLogger(__name__)

#: How often ``up`` looks for roles that stopped.
WATCH_S = 0.5


def role_names(requested: str | None, settings: Settings) -> tuple[list[str], list[str]]:
    """The roles to run, and notices about roles left out.

    Args:
        requested: ``--roles`` (comma-separated), or ``None`` for every role.
        settings: the configuration (``judge.model``).

    Raises:
        ConfigError: an unknown or repeated role, none at all, or ``judge`` asked for by
            name without ``judge.model``.
    """
    notices: list[str] = []
    if requested is None:
        names = list(ROLE_NAMES)
        if settings.judge.model is None:
            names.remove("judge")
            notices.append(
                "judge role skipped: no judge.model configured (set it to one of `models` "
                "to judge faithfulness and preferences)"
            )
        return names, notices
    names = [n.strip() for n in requested.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROLE_NAMES]
    if unknown or not names:
        raise ConfigError(
            f"unknown role(s) {', '.join(unknown) or '(none given)'} in --roles; "
            f"roles: {', '.join(ROLE_NAMES)}"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"--roles names a role twice: {requested}")
    if "judge" in names and settings.judge.model is None:
        raise ConfigError("the judge role needs judge.model: set it to one of `models`")
    return sorted(names, key=ROLE_NAMES.index), notices


def up_command(
    roles: Annotated[
        str | None,
        typer.Option(
            "--roles",
            help=f"Comma-separated roles to run (default: all of {', '.join(ROLE_NAMES)}).",
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings (as `shadowlab -c`).")
    ] = None,
) -> None:
    """Run every role in one process, with the admin HTTP API; SIGTERM or Ctrl-C stops it.

    Kafka and ClickHouse are the configured ones, else the embedded broker and chDB.
    """
    from producers.live_router import LiveRouter  # noqa: PLC0415 - keeps `--help` fast
    from shadowlab.admin import AdminServer, check_token  # noqa: PLC0415
    from shadowlab.core.flags_io import flags_options  # noqa: PLC0415
    from shadowlab.embedded.stack import open_stack  # noqa: PLC0415
    from shadowlab.roles import RoleSet, build_role  # noqa: PLC0415

    use_config(config)
    settings = current_settings()
    names, notices = role_names(roles, settings)
    check_token(settings)
    for notice in notices:
        console.print(f"[yellow]note[/yellow]: {notice}")
    stopping = threading.Event()

    def graceful(signum: int, _frame: object) -> None:
        err_console.print(f"{signal.Signals(signum).name}: stopping the roles…")
        stopping.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second one: at once
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    signal.signal(signal.SIGINT, graceful)
    signal.signal(signal.SIGTERM, graceful)
    try:
        with ExitStack() as running:
            console.print("starting the stack (Kafka, ClickHouse)…")
            stack = running.enter_context(open_stack(settings))
            connection = stack.kafka_config()
            flags = running.enter_context(
                LiveRouter(connection, settings.topics.flags, **flags_options(settings))
            )

            def stage_of(route: str) -> str | None:
                current = flags.flags(route)
                return current.stage if current else None

            clickhouse = clickhouse_clients(settings, stack.clickhouse, running)
            role_set = RoleSet(
                {
                    name: build_role(
                        name,
                        settings,
                        connection,
                        stage_of=stage_of,
                        clickhouse=clickhouse() if name in ("sink", "gates") else None,
                        embedded=stack.broker is not None,
                    )
                    for name in names
                }
            )
            admin = running.enter_context(
                AdminServer(settings, connection, role_set, clickhouse=clickhouse())
            )
            if stopping.is_set():
                return
            running.enter_context(role_set)  # started now; stopped (and joined) first on exit
            console.print(banner(settings, stack.bootstrap_servers, stack.broker is not None,
                                 admin.url, names))  # fmt: skip
            watch(role_set, stopping)
            console.print("stopping the roles (each finishes its current batch)…")
    finally:
        _restore_signals()
    console.print("stopped")


def clickhouse_clients(
    settings: Settings, shared: Client, cleanup: ExitStack
) -> Callable[[], Client]:
    """A source of ClickHouse clients for the threads of ``up`` (sink, gates, admin API).

    The in-process engine (chDB) is one per process: every thread shares ``shared``. A
    ClickHouse server gets one client per thread, because a clickhouse-connect client keeps
    one server session and the server refuses concurrent queries in a session. Clients made
    here are closed by ``cleanup``.
    """
    dsn = settings.clickhouse.dsn_value(settings.data_dir)
    if dsn.startswith("chdb://"):
        return lambda: shared

    def make() -> Client:
        from sinks.clickhouse import open_client  # noqa: PLC0415 - keeps `--help` fast

        client = open_client(dsn)
        cleanup.callback(client.close)
        return client

    return make


def banner(settings: Settings, kafka: str, embedded: bool, url: str, names: list[str]) -> str:
    """What ``up`` prints once everything runs: where each part is, and how to use it."""
    token = (
        "changes need 'Authorization: Bearer <admin.token>'"
        if settings.admin.token is not None
        else "changes disabled: set SHADOWLAB_ADMIN__TOKEN to enable them"
    )
    where = "embedded Tansu, memory only" if embedded else "configured"
    return "\n".join(
        [
            "[green]shadowlab is up[/green]",
            f"  Kafka       {kafka} ({where})",
            f"  ClickHouse  {settings.clickhouse.redacted_dsn(settings.data_dir)}",
            f"  admin API   {url}  (/health, /metrics, /flags, /gates/ROUTE; {token})",
            f"  roles       {', '.join(names)}",
            "SIGTERM or Ctrl-C stops",
        ]
    )


def watch(roles: RoleSet, stopping: threading.Event) -> None:
    """Block until ``stopping`` is set, logging each role that stops on its own (once)."""
    reported: set[str] = set()
    while not stopping.wait(WATCH_S):
        failures = roles.failures()
        for name, alive in roles.alive().items():
            if alive or name in reported:
                continue
            reported.add(name)
            why = f"failed ({type(failures[name]).__name__})" if name in failures else "stopped"
            log.error(
                "role %s %s; the other roles go on and /health answers 503 until restarted",
                name,
                why,
            )


def _restore_signals() -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
