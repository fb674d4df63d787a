"""``shadowlab eval``: the golden-set comparison of the current model and a candidate.

Exit status: 0 the pre-deployment gate passed, 1 it failed, 2 inconclusive, 3 a usage or
input error (bad option, unknown model, unreadable file, unreachable endpoint).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from processors.clients import model_client
from processors.evaluation.golden import (
    GoldenItem,
    ItemResult,
    Matcher,
    ModelSummary,
    accuracy_gate,
    flips,
    parse_golden,
    summarise,
)
from processors.evaluation.runner import Faithfulness, check_reachable, run_items
from processors.evaluation.store import EvalRun, offline_decision, run_json, store_run
from processors.judge.faithfulness import judge_faithfulness
from shadowlab.exceptions import ConfigError
from shadowlab.settings import Settings
from shadowlab.simulator import EVENT_TIME_HEADER

console = Console()
err_console = Console(stderr=True)
EXIT = {"pass": 0, "fail": 1, "inconclusive": 2}


def _read_golden(path: Path, matcher: Matcher, *, strict: bool) -> list[GoldenItem]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the golden file {path}: {exc.strerror}") from None
    items, problems = parse_golden(text.splitlines(), matcher)
    for problem in problems:
        err_console.print(f"[yellow]{path}:{problem}[/yellow]", highlight=False)
    if problems and strict:
        raise ConfigError(f"{len(problems)} malformed line(s) in {path} (--strict); fix them")
    if not items:
        raise ConfigError(f"{path} has no usable golden items")
    if problems:
        err_console.print(f"skipped {len(problems)} line(s); evaluating {len(items)} item(s)")
    return items


def _faithfulness(settings: Settings, judge: str | None) -> tuple[Faithfulness | None, Any]:
    """The judge's faithfulness scorer (and its client, to close), or none without a judge."""
    if judge is None:
        return None, None
    endpoint = settings.model(judge)
    client = model_client(endpoint, max_retries=2)

    async def score(question: str, answer: str, context: list[str]) -> float | None:
        verdict = await judge_faithfulness(
            client, endpoint, question=question, answer=answer, context=context
        )
        return verdict.score

    return score, client


async def _run_both(
    settings: Settings, models: dict[str, str], items: list[GoldenItem], matcher: Matcher,
    concurrency: int, judge: str | None, headers: dict[str, str],
) -> dict[str, list[ItemResult]]:  # fmt: skip
    endpoints = {role: settings.model(name) for role, name in models.items()}
    clients = {
        role: model_client(e, max_retries=1).with_options(default_headers=headers)
        for role, e in endpoints.items()
    }
    faithfulness, judge_api = _faithfulness(settings, judge)
    if judge_api is not None:
        clients["judge"] = judge_api
    try:
        for role, endpoint in endpoints.items():
            await check_reachable(clients[role], endpoint)
        if judge is not None:
            await check_reachable(judge_api, settings.model(judge))
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn())  # fmt: skip
        with Progress(*columns, console=err_console) as progress:
            tasks = {r: progress.add_task(f"{r}: {m}", total=len(items)) for r, m in models.items()}

            def advance(task: TaskID) -> Callable[[ItemResult], None]:
                return lambda _result: progress.advance(task)

            runs = [
                run_items(
                    clients[role],
                    endpoints[role],
                    items,
                    matcher,
                    concurrency=concurrency,
                    faithfulness=faithfulness,
                    on_done=advance(tasks[role]),
                )
                for role in models
            ]
            results = await asyncio.gather(*runs)
    finally:
        for client in clients.values():
            await client.close()
    return dict(zip(models, results, strict=True))


def _table(summaries: dict[str, ModelSummary]) -> Table:
    current, candidate = summaries["current"], summaries["candidate"]
    table = Table(title=f"{current.model} → {candidate.model}")
    for column in ("", "current", "candidate", "change"):
        table.add_column(column, justify="left" if not column else "right")

    def row(name: str, a: float | None, b: float | None, fmt: str) -> None:
        change = f"{b - a:+{fmt}}" if a is not None and b is not None else "-"
        table.add_row(name, f"{a:{fmt}}" if a is not None else "-",
                      f"{b:{fmt}}" if b is not None else "-", change)  # fmt: skip

    row("accuracy", current.accuracy, candidate.accuracy, ".1%")
    row("faithfulness (1-5)", current.faithfulness, candidate.faithfulness, ".2f")
    row("p50 latency ms", current.p50_ms, candidate.p50_ms, ".0f")
    row("p95 latency ms", current.p95_ms, candidate.p95_ms, ".0f")
    row("error rate", current.error_rate, candidate.error_rate, ".1%")
    row("cost per 1k queries $", current.cost_per_1k_usd, candidate.cost_per_1k_usd, ".4f")
    table.add_row("items", str(current.items), str(candidate.items), "")
    return table


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
    from shadowlab.cli import _state, clickhouse_client, current_settings  # noqa: PLC0415

    if config is not None:
        _state.config = config
    if matcher not in ("keyword", "exact", "regex"):
        raise ConfigError(f"unknown --matcher {matcher!r}; use keyword, exact or regex")
    settings = current_settings()
    models = {"current": current, "candidate": candidate}
    for name in models.values():
        settings.model(name)  # unknown model: a ConfigError naming the known ones
    chosen: Matcher = matcher  # type: ignore[assignment]
    items = _read_golden(golden, chosen, strict=strict)
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


def run_evaluation(
    settings: Settings, models: dict[str, str], items: list[GoldenItem], golden: Path, *,
    matcher: Matcher, concurrency: int, judge: str | None, threshold: float, route: str | None,
    as_of: dt.datetime | None = None,
) -> EvalRun:  # fmt: skip
    """Ask both models (``current``, ``candidate``) every item and decide the offline gate.

    ``as_of`` sends an event time with each call, for a simulator replaying drift.
    """
    started = dt.datetime.now(dt.UTC)
    headers = {EVENT_TIME_HEADER: as_of.isoformat()} if as_of is not None else {}
    results = asyncio.run(_run_both(settings, models, items, matcher, concurrency, judge, headers))
    summaries = {role: summarise(models[role], results[role]) for role in models}
    correct = {role: [r.correct for r in results[role]] for role in models}
    gate = accuracy_gate(correct["current"], correct["candidate"], threshold=threshold)
    return EvalRun(
        run_id=f"{started:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}", started_at=started,
        finished_at=dt.datetime.now(dt.UTC), golden_file=str(golden),
        golden_sha256=hashlib.sha256(golden.read_bytes()).hexdigest(), matcher=matcher,
        route=route, summaries=summaries, results=results, gate=gate,
    )  # fmt: skip


def print_run(run: EvalRun, broken: list[str], fixed: list[str]) -> None:
    """Print the side-by-side table, the flipped items and the gate."""
    console.print(_table(dict(run.summaries)))
    console.print(f"right → wrong ({len(broken)}): {', '.join(broken) or '-'}")
    console.print(f"wrong → right ({len(fixed)}): {', '.join(fixed) or '-'}")
    gate = run.gate
    colour = {"pass": "green", "fail": "red", "inconclusive": "yellow"}[gate.outcome]
    interval = (
        f"[{gate.ci_low:.3f}, {gate.ci_high:.3f}]"
        if gate.ci_low is not None and gate.ci_high is not None
        else "n/a"
    )
    ratio = f"{gate.ratio:.3f}" if gate.ratio is not None else "n/a"
    console.print(
        f"gate: candidate accuracy ≥ {gate.threshold:g} × current: ratio {ratio}, 95% paired "
        f"bootstrap interval {interval} → [{colour}]{gate.outcome}[/{colour}]"
    )


def publish_offline(settings: Settings, client: object, run: EvalRun, route: str) -> None:
    """Store the offline decision in ClickHouse and publish it on ``gate.decisions``."""
    from confluent_kafka import Producer  # noqa: PLC0415

    from shadowlab.kafka import producer_config  # noqa: PLC0415
    from sinks.clickhouse import insert_events  # noqa: PLC0415

    decision = offline_decision(run, route)
    insert_events(client, settings.clickhouse.database, [decision])  # type: ignore[arg-type]
    if settings.kafka.bootstrap_servers:
        producer = Producer(producer_config(settings.kafka.librdkafka(), **{"linger.ms": "0"}))
        producer.produce(settings.topics.decisions, key=route, value=decision.to_json())
        if producer.flush(10) > 0:
            err_console.print("[yellow]the offline decision was not delivered to Kafka")
    console.print(f"offline gate for {route}: {decision.outcome} ({decision.decision_id})")
