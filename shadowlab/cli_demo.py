"""``shadowlab demo``: one command that shows the whole system working (see :mod:`shadowlab.demo`).

Exit status: 0 the demo ran and every count reconciled; 1 a count did not reconcile; 3 a
usage or input error (unknown scenario, invalid scenario file).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from shadowlab.cli_rollout import format_cell, gates_table
from shadowlab.scenario import builtin_scenarios, load_scenario

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from shadowlab.demo import Demo, DemoResult

console = Console()
_COLUMNS = ("stage", "gate", "outcome", "value", "baseline", "threshold", "ci_low", "ci_high",
            "n", "action")  # fmt: skip


def _list() -> None:
    table = Table(title="built-in scenarios (shadowlab demo --scenario NAME)")
    for column in ("name", "expected outcome", "what happens"):
        table.add_column(column)
    for name in builtin_scenarios():
        scenario = load_scenario(name)
        expected = scenario.expect + (f" ({scenario.expect_gate})" if scenario.expect_gate else "")
        table.add_row(name, expected, scenario.description)
    console.print(table)


def _live_view(demo: Demo) -> Group:
    status = demo.status()
    counts = status["counts"]
    hours = (status["now"] - demo.start).total_seconds() / 3600
    weight = f" {status['weight_pct']:g} %" if status["stage"] == "canary" else ""
    head = (
        f"[bold]{status['now']:%a %d %b %H:%M}[/bold] (event hour {hours:.0f}) · stage "
        f"[bold]{status['stage']}{weight}[/bold] · requests {counts['requests']:,} · shadow "
        f"{counts['shadow_results']:,} · comparisons {counts['comparisons']:,} · judgements "
        f"{counts['judgements']:,} · feedback {counts['feedback']:,}"
    )
    return Group(head, gates_table(status["gates"], "gates (latest decision each)", _COLUMNS))


def _summary(result: DemoResult) -> None:
    rows = [{**g, "gate": g["name"]} for g in result.gates]
    console.print(gates_table(rows, "gates at the end", _COLUMNS))
    decisions = Table(title="the rollout's decisions", title_justify="left")
    for column in ("event time", "stage", "gate", "outcome", "action", "value", "threshold", "n"):
        decisions.add_column(column)
    for d in result.decisions:
        decisions.add_row(
            f"{d['window_end']:%a %H:%M}", d["stage"], d["gate"], d["outcome"], d["action"],
            format_cell(d["value"]), format_cell(d["threshold"]), format_cell(d["n"]),
        )  # fmt: skip
    console.print(decisions)
    counts = Table(title="produced = stored in ClickHouse, each exactly once", title_justify="left")
    for column in ("events", "produced", "rows (FINAL)", "distinct ids"):
        counts.add_column(column, justify="left" if column == "events" else "right")
    for key, row in result.counts["reconcile"].items():
        ok = row["produced"] == row["stored"] == row["distinct"]
        style = "" if ok else "[red]"
        counts.add_row(key, *(f"{style}{row[k]:,}" for k in ("produced", "stored", "distinct")))
    console.print(counts)
    flags = result.final_flags
    colour = "green" if result.outcome == "promoted" else "red"
    console.print(
        f"[bold]outcome: [{colour}]{result.outcome}[/{colour}][/bold] after "
        f"{result.event_hours:.0f} h of event time in {result.wall_s:.0f} s · flags v"
        f"{flags['version']}: primary {flags['primary']}, canary {flags['canary']} at "
        f"{flags['canary_weight_bp'] / 100:g} %, override {flags['override']}"
    )


def demo_command(
    scenario: Annotated[
        str, typer.Option(help="A built-in scenario (see --list) or a scenario YAML file.")
    ] = "good",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the result as JSON.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML report of the rollout.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Replace the scenario's seed.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the built-in scenarios.")] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="Keep the broker log and chDB here (default: a temp dir).")
    ] = None,
) -> None:
    """Run the whole loop on simulated models: offline gate, shadow, canary, verdict."""
    if list_:
        _list()
        return
    from shadowlab.demo import Demo  # noqa: PLC0415 - faust and chDB are slow to import

    root = logging.getLogger()
    if root.level > logging.DEBUG:  # the live view tells the story; roles' logs only on -v
        root.setLevel(logging.WARNING)
    chosen = load_scenario(scenario)
    if seed is not None:
        chosen = chosen.model_copy(update={"seed": seed})
    workdir = data_dir or Path(tempfile.mkdtemp(prefix="shadowlab-demo-"))
    console.print(f"[bold]shadowlab demo[/bold]: scenario {chosen.name}: {chosen.description}")
    demo = Demo(chosen, workdir, console)
    finish = None
    if report is not None:
        from shadowlab.report import build_report  # noqa: PLC0415

        def finish(client: Client, database: str) -> None:
            report.write_text(build_report(client, database, chosen.route), encoding="utf-8")

    try:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            result = demo.run(on_tick=lambda d: live.update(_live_view(d)), finish=finish)
    finally:
        if data_dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    _summary(result)
    if report is not None:
        console.print(f"report: {report}")
    if json_out is not None:
        json_out.write_text(json.dumps(result.to_json(), indent=1) + "\n", encoding="utf-8")
        console.print(f"result: {json_out}")
    if not result.reconciled:
        console.print("[red]counts did not reconcile (see the table above)")
        raise typer.Exit(1)
