"""What the ``shadowlab`` commands share: the consoles, ``--config``, settings, ClickHouse.

Every ``cli_*`` module imports this one (never :mod:`shadowlab.cli`, which imports them to
register their commands), so the command modules form no cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from shadowlab.core.settings import Settings, load_settings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

console = Console()
err_console = Console(stderr=True)


class CliState:
    """The options of this invocation that every command reads."""

    config: Path | None = None


state = CliState()


def use_config(config: Path | None) -> None:
    """Take ``--config`` given after a subcommand (it wins over one given before it)."""
    if config is not None:
        state.config = config


def current_settings() -> Settings:
    """The settings of this invocation (``--config`` and the environment)."""
    return load_settings(state.config)


@contextmanager
def clickhouse_client(settings: Settings, *, migrate: bool = False) -> Iterator[Client]:
    """The configured ClickHouse client, closed on exit.

    With ``migrate`` the migrations are applied first (and reported); without, the client's
    default database is shadowlab's, so queries may name tables unqualified.
    """
    from sinks.clickhouse import open_client  # noqa: PLC0415 - keeps `--help` fast
    from sinks.migrations import apply_migrations  # noqa: PLC0415

    dsn = settings.clickhouse.dsn_value(settings.data_dir)
    client = open_client(dsn, database=None if migrate else settings.clickhouse.database)
    try:
        if migrate:
            applied = apply_migrations(client, settings.clickhouse.database)
            target = settings.clickhouse.redacted_dsn(settings.data_dir)
            console.print(
                f"applied migrations {applied} to {target}"
                if applied
                else f"{target} is up to date"
            )
        yield client
    finally:
        client.close()
