"""The ``shadowlab`` command line."""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.logging import RichHandler
from rich.table import Table

import schemas
from shadowlab import __version__
from shadowlab.cli_demo import demo_command
from shadowlab.cli_eval import eval_command
from shadowlab.cli_flags import flags_app
from shadowlab.cli_report import report_command
from shadowlab.cli_rollout import gates_app, rollout_app
from shadowlab.cli_state import clickhouse_client, console, current_settings, err_console, state
from shadowlab.cli_up import up_command
from shadowlab.core.errors import ConfigError, ShadowlabError
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.logsafe import EscapeControlCharacters
from shadowlab.core.settings import Settings
from shadowlab.embedded.broker import EmbeddedBroker, stop_on_sigterm
from shadowlab.roles import ROLE_NAMES, build_role

if TYPE_CHECKING:
    from shadowlab.core.role import Role

app = typer.Typer(
    name="shadowlab",
    help="Swap the LLM behind a production service without regressions.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
schemas_app = typer.Typer(help="Event schemas for producers in any language.", no_args_is_help=True)
db_app = typer.Typer(help="The ClickHouse schema.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(db_app, name="db")
app.add_typer(flags_app, name="flags")
app.add_typer(rollout_app, name="rollout")
app.add_typer(gates_app, name="gates")
app.command("eval")(eval_command)
app.command("demo")(demo_command)
app.command("report")(report_command)
app.command("up")(up_command)


def _escaping(handler: logging.Handler) -> logging.Handler:
    """``handler`` with control characters escaped in every message (no forged lines)."""
    handler.addFilter(EscapeControlCharacters())
    return handler


@app.callback()
def _main(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (or $SHADOWLAB_CONFIG)."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at DEBUG.")] = False,
) -> None:
    state.config = config
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[_escaping(RichHandler(console=err_console, show_path=False))],
    )
    if not verbose:  # one line per model call would drown the roles' own reports
        for noisy in ("httpx", "httpx2", "openai"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def version() -> None:
    """Print shadowlab's version."""
    console.print(__version__)


@app.command()
def broker(
    port: Annotated[int | None, typer.Option(help="Port to listen on (default: a free one).")] = (
        None
    ),
    create_topics: Annotated[
        bool, typer.Option(help="Create shadowlab's topics once the broker is up.")
    ] = True,
) -> None:
    """Run the embedded Kafka broker (Tansu, memory storage) in the foreground."""
    stop_on_sigterm()
    settings = current_settings()
    with EmbeddedBroker(port=port, log_path=settings.data_dir / "logs" / "broker.log") as b:
        if create_topics:
            ensure_topics(
                {"bootstrap.servers": b.bootstrap_servers},
                settings.topics.partitions_of(),
                configs=settings.topics.configs_of(),
            )
        console.print(
            f"[green]Kafka broker on [bold]{b.bootstrap_servers}[/bold][/green] (pid {b.pid}); "
            f"export SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS={b.bootstrap_servers}. Ctrl-C stops it."
        )
        try:
            while b.is_running():
                time.sleep(0.5)
        except KeyboardInterrupt:
            console.print("stopping the broker")


@app.command()
def smoke() -> None:
    """Start the embedded stack and check a RequestEvent round trip: Kafka → ClickHouse."""
    from shadowlab.embedded.stack import open_stack  # noqa: PLC0415
    from shadowlab.smoke import run_smoke  # noqa: PLC0415 - keeps `--help` fast

    settings = current_settings()
    with console.status("starting the stack (Kafka, ClickHouse)…"), open_stack(settings) as stack:
        result = run_smoke(stack)
    table = Table(title=f"round trip of {result.request_id}")
    table.add_column("step")
    table.add_column("ms", justify="right")
    for name, ms in result.steps:
        table.add_row(name, f"{ms:.1f}")
    console.print(table)
    if not result.equal:
        err_console.print("[red]the event read back from ClickHouse differs from the one sent")
        raise typer.Exit(1)
    console.print("[green]ok[/green]: the event read back from ClickHouse equals the one sent")


@app.command()
def init() -> None:
    """Create the topics and apply the ClickHouse migrations on the configured services."""
    settings = current_settings()
    created = ensure_topics(
        settings.kafka.librdkafka(),
        settings.topics.partitions_of(),
        replication_factor=settings.topics.replication(),
        configs=settings.topics.configs_of(),
    )
    console.print(f"topics created: {', '.join(sorted(created)) or 'none (all exist)'}")
    _migrate(settings)


ROLES = ROLE_NAMES


def _no_stage(_route: str) -> str | None:
    return None  # the sink and gates roles do not follow the stage


def serve(role: Role) -> None:
    """Run ``role`` in the foreground; SIGTERM or Ctrl-C stops it after its current batch.

    A second signal interrupts at once (what was not committed is read again on restart).
    """

    def graceful(signum: int, _frame: object) -> None:
        err_console.print(f"{signal.Signals(signum).name}: finishing the current batch…")
        role.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)

    signal.signal(signal.SIGINT, graceful)
    signal.signal(signal.SIGTERM, graceful)
    try:
        role.run()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@app.command()
def run(role: Annotated[str, typer.Argument(help=f"One of: {', '.join(ROLES)}.")]) -> None:
    """Run one stream role against the configured Kafka (one container per role)."""
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    settings = current_settings()
    connection = settings.kafka.librdkafka()
    ensure_topics(
        connection,
        settings.topics.partitions_of(),
        replication_factor=settings.topics.replication(),
        configs=settings.topics.configs_of(),
    )
    if role == "sink":
        _run_sink(settings, connection)
    elif role == "gates":
        _run_gates(settings, connection)
    else:
        _run_staged(settings, connection, role)


def _run_staged(settings: Settings, connection: dict[str, str], role_name: str) -> None:
    """Run the shadow, join or judge role, following each route's stage from ``routing.flags``."""
    from producers.live_router import LiveRouter  # noqa: PLC0415 - keeps `--help` fast
    from shadowlab.core.flags_io import flags_options  # noqa: PLC0415

    topics = settings.topics
    with LiveRouter(connection, topics.flags, **flags_options(settings)) as flags:

        def stage_of(route: str) -> str | None:
            current = flags.flags(route)
            return current.stage if current else None

        role = build_role(role_name, settings, connection, stage_of=stage_of)
        if role_name == "judge":
            judge = settings.judge
            budget = f"${judge.max_usd_per_hour:g}/hour" if judge.max_usd_per_hour else "no budget"
            banner = (
                f"judge role: {judge.model} judges faithfulness of {judge.sample_rate:.0%} and "
                f"shadow preferences of {judge.pairwise_sample_rate:.0%} of requests "
                f"({budget}) → {topics.judgements}"
            )
        elif role_name == "join":
            banner = (
                f"join role: {topics.requests} ⋈ {topics.shadow} → {topics.comparisons} "
                f"(window {settings.join.window_s:g} s)"
            )
        else:
            banner = (
                f"shadow role: {sum(len(r.candidates) for r in settings.routes)} "
                f"candidate(s) on {len(settings.routes)} route(s)"
            )
        console.print(f"{banner}; Ctrl-C stops")
        try:
            serve(role)
        finally:
            report = getattr(role, "report", None)  # the shadow, join and judge roles log one
            if callable(report):
                report()


def _run_sink(settings: Settings, connection: dict[str, str]) -> None:
    from sinks.role import SinkRole  # noqa: PLC0415

    with clickhouse_client(settings, migrate=True) as client:
        role = build_role("sink", settings, connection, stage_of=_no_stage, clickhouse=client)
        assert isinstance(role, SinkRole)  # noqa: S101 - narrows the type
        console.print(
            f"sink role: every event topic → {settings.clickhouse.redacted_dsn(settings.data_dir)}"
            "; Ctrl-C stops"
        )
        serve(role)
        console.print(
            f"written: {role.counters.written}, dead-lettered: {role.counters.dead_lettered}"
        )


def _run_gates(settings: Settings, connection: dict[str, str]) -> None:
    from processors.gates.role import GatesRole  # noqa: PLC0415

    with clickhouse_client(settings, migrate=True) as client:
        role = build_role("gates", settings, connection, stage_of=_no_stage, clickhouse=client)
        assert isinstance(role, GatesRole)  # noqa: S101 - narrows the type
        plan = settings.rollout
        console.print(
            f"gates role: a tick every {plan.tick_s:g} s of event time, family-wise "
            f"α {plan.alpha:g}; Ctrl-C stops"
        )
        serve(role)
        console.print(f"ticks: {role.counters.ticks}, actions: {role.counters.actions}")


@app.command()
def sql(
    query: Annotated[str, typer.Argument(help="The SQL to run.")],
    output: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    write: Annotated[
        bool, typer.Option("--write", help="Allow statements that change data.")
    ] = False,
) -> None:
    """Run SQL against the configured ClickHouse (read-only unless --write)."""
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    if output not in ("table", "json", "csv"):
        raise ConfigError(f"unknown --format {output!r}; use table, json or csv")
    with clickhouse_client(current_settings(), migrate=False) as client:
        try:
            result = client.query(query, settings=None if write else {"readonly": 1})
        except Exception as exc:  # the server's message says what was wrong with the SQL
            raise ConfigError(f"query failed: {str(exc).splitlines()[0][:500]}") from None
    names, rows = list(result.column_names), result.result_rows
    if output == "json":
        console.print_json(
            json.dumps([dict(zip(names, r, strict=True)) for r in rows], default=str)
        )
    elif output == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(names)
        writer.writerows(rows)
        sys.stdout.write(buffer.getvalue())
    else:
        table = Table()
        for name in names:
            table.add_column(name)
        for row in rows:
            table.add_row(*(str(v) for v in row))
        console.print(table)


@app.command()
def simulate(
    config: Annotated[Path, typer.Option("--config", help="Simulator models YAML.")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
) -> None:
    """Serve simulated OpenAI-compatible models (a test and demo double, not a model)."""
    from shadowlab.testing.model_server import SimulatorConfig, serve  # noqa: PLC0415

    sim = SimulatorConfig.from_yaml(config)
    names = ", ".join(m.name for m in sim.models)
    console.print(f"simulated models ({names}) on [bold]http://{host}:{port}/v1[/bold]")
    serve(sim, host, port)


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="Where to write <EventType>.schema.json.")],
) -> None:
    """Write one JSON Schema file per event type."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.json_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_text(json.dumps(schema, indent=2) + "\n", encoding="utf-8")
        console.print(f"wrote {path}")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending ClickHouse migrations (a second run is a no-op)."""
    _migrate(current_settings())


def _migrate(settings: Settings) -> None:
    with clickhouse_client(settings, migrate=True):
        pass


def main() -> None:
    """Entry point: run the CLI, turning shadowlab's errors into one clear line and exit 3."""
    try:
        app()
    except ShadowlabError as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(3)
