"""``shadowlab eval``: the golden-set comparison of the current model and a candidate.

Exit status: 0 the pre-deployment gate passed, 1 it failed, 2 inconclusive, 3 a usage or
input error (bad option, unknown model, unreadable file, unreachable endpoint). The work is
:mod:`shadowlab.offline_eval`'s; this module is the command.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from processors.evaluation.golden import Matcher, flips
from processors.evaluation.store import run_json, store_run
from shadowlab.cli_state import clickhouse_client, current_settings, err_console, use_config
from shadowlab.core.errors import ConfigError
from shadowlab.offline_eval import print_run, publish_offline, read_golden, run_evaluation

EXIT = {"pass": 0, "fail": 1, "inconclusive": 2}


def eval_command(
    golden: Annotated[Path, typer.Option("--golden", help="Golden set, JSON Lines.")],
    current: Annotated[str, typer.Option(help="The model in service (from `models`).")],
    candidate: Annotated[str, typer.Option(help="The model to evaluate (from `models`).")],
    matcher: Annotated[str, typer.Option(help="keyword, exact or regex.")] = "keyword",
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Calls at once.")] = 16,
    threshold: Annotated[float, typer.Option(help="Candidate ≥ this × current accuracy.")] = 0.95,
    route: Annotated[
        str | None, typer.Option(help="Publish the gate for this route's rollout.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write results as JSON.")] = None,
    strict: Annotated[bool, typer.Option(help="Stop on a malformed golden line.")] = False,
    judge: Annotated[
        str | None,
        typer.Option(help="Judge model for faithfulness (default: `judge.model`; none: skip)."),
    ] = None,
    store: Annotated[bool, typer.Option(help="Store the run in ClickHouse.")] = True,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="YAML settings (as `shadowlab -c`).")
    ] = None,
) -> None:
    """Compare the current model and a candidate on a golden set: the pre-deployment gate."""
    use_config(config)
    if matcher not in ("keyword", "exact", "regex"):
        raise ConfigError(f"unknown --matcher {matcher!r}; use keyword, exact or regex")
    settings = current_settings()
    models = {"current": current, "candidate": candidate}
    for name in models.values():
        settings.model(name)  # unknown model: a ConfigError naming the known ones
    chosen: Matcher = matcher  # type: ignore[assignment]
    items = read_golden(golden, chosen, strict=strict)
    judge = judge or settings.judge.model
    if judge is None:
        err_console.print("no judge model (`judge.model` or --judge): faithfulness is not scored")
    run = run_evaluation(
        settings, models, items, golden, matcher=chosen, concurrency=concurrency, judge=judge,
        threshold=threshold, route=route,
    )  # fmt: skip
    flipped = flips(run.results["current"], run.results["candidate"])
    print_run(run, flipped.broken, flipped.fixed)
    if store:
        with clickhouse_client(settings, migrate=True) as client:
            store_run(client, settings.clickhouse.database, run)
            if route is not None:
                publish_offline(settings, client, run, route)
    if json_out is not None:
        document = run_json(run, {"broken": flipped.broken, "fixed": flipped.fixed})
        json_out.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    raise typer.Exit(EXIT[run.gate.outcome])
