"""``shadowlab report ROUTE --out FILE.html``: the route's rollout as one HTML page.

The page (:func:`shadowlab.report.build_report`) is self-contained: open it in any browser,
attach it to a ticket, no network needed. Exit status 3 when the route has no data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shadowlab.cli_state import clickhouse_client, current_settings
from shadowlab.core.errors import ConfigError

console = Console()


def report_command(
    route: Annotated[str, typer.Argument(help="The route to report on.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write.")],
    title: Annotated[str | None, typer.Option(help="Page title (default: the route).")] = None,
) -> None:
    """Write the route's rollout report: latency, errors, quality, weight, every decision."""
    from shadowlab.report import build_report  # noqa: PLC0415 - keeps `--help` fast

    settings = current_settings()
    with clickhouse_client(settings) as client:
        html = build_report(client, settings.clickhouse.database, route, title=title)
    data = html.encode("utf-8")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"cannot write the report to {out}: {exc.strerror}") from None
    console.print(f"wrote {out} ({_size(len(data))})", highlight=False)


def _size(n: int) -> str:
    return f"{n:,} bytes" if n < 10_000 else f"{n / 1024:,.0f} KiB, {n:,} bytes"
