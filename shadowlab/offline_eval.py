"""The offline gate's domain work: ask both models a golden set, decide, store, publish.

``shadowlab eval`` (:mod:`shadowlab.cli_eval`) and the demo both call these functions.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    parse_golden,
    summarise,
)
from processors.evaluation.reruns import (
    Rerun,
    earlier_runs,
    golden_digest,
    rerun_alert,
    rerun_policy,
)
from processors.evaluation.runner import Faithfulness, check_reachable, run_items
from processors.evaluation.store import EvalRun, offline_decision
from processors.judge.faithfulness import judge_faithfulness
from shadowlab.core.errors import ConfigError
from shadowlab.core.headers import EVENT_TIME_HEADER
from shadowlab.core.settings import Settings

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

console = Console()
err_console = Console(stderr=True)


def read_golden(path: Path, matcher: Matcher, *, strict: bool) -> list[GoldenItem]:
    """The golden items of ``path``; malformed lines are reported (or refused with ``strict``).

    Raises:
        ConfigError: the file is unreadable, has no usable item, or (``strict``) bad lines.
    """
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


def run_table(summaries: dict[str, ModelSummary]) -> Table:
    """The two models side by side: accuracy, faithfulness, latency, errors, cost."""
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
        golden_sha256=hashlib.sha256(golden.read_bytes()).hexdigest(),
        golden_digest=golden_digest(items), matcher=matcher,
        route=route, summaries=summaries, results=results, gate=gate,
    )  # fmt: skip


def print_run(run: EvalRun, broken: list[str], fixed: list[str]) -> None:
    """Print the side-by-side table, the flipped items and the gate."""
    console.print(run_table(dict(run.summaries)))
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


def check_golden_set(
    settings: Settings, client: Client, *, route: str, candidate: str, digest: str,
    golden: Path, reason: str | None, actor: str,
) -> Rerun | None:  # fmt: skip
    """Apply the repeated-test rule to an offline decision about to be published.

    Returns:
        ``None`` for the first decision on this golden set (route, candidate), else the
        re-run to record (``reason`` given).

    Raises:
        GoldenSetReusedError: the set was used before and no ``reason`` is given.
    """
    earlier = earlier_runs(client, settings.clickhouse.database, route=route,
                           candidate=candidate, digest=digest)  # fmt: skip
    return rerun_policy(earlier, route=route, candidate=candidate, digest=digest,
                        golden_file=str(golden), reason=reason, actor=actor)  # fmt: skip


def publish_offline(
    settings: Settings, client: Client, run: EvalRun, route: str, *, rerun: Rerun | None = None
) -> None:
    """Store the offline decision in ClickHouse and publish it on ``gate.decisions``.

    A ``rerun`` (see :func:`processors.evaluation.reruns.rerun_policy`, which the caller
    applies) is recorded in the decision and raises a ``manual`` alert, stored in ``alerts``
    and published on ``gate.alerts``.
    """
    from confluent_kafka import Producer  # noqa: PLC0415

    from shadowlab.core.kafka import producer_config  # noqa: PLC0415
    from sinks.clickhouse import insert_events  # noqa: PLC0415

    database = settings.clickhouse.database
    decision = offline_decision(run, route, rerun)
    alert = rerun_alert(decision, rerun) if rerun is not None else None
    insert_events(client, database, [decision])
    if alert is not None:
        insert_events(client, database, [alert])
    if settings.kafka.bootstrap_servers:
        producer = Producer(producer_config(settings.kafka.librdkafka(), **{"linger.ms": "0"}))
        producer.produce(settings.topics.decisions, key=route, value=decision.to_json())
        if alert is not None:
            producer.produce(settings.topics.alerts, key=route, value=alert.to_json())
        if producer.flush(10) > 0:
            err_console.print("[yellow]the offline decision was not delivered to Kafka")
    console.print(f"offline gate for {route}: {decision.outcome} ({decision.decision_id})")
    if rerun is not None:
        err_console.print(
            f"recorded as a re-run on this golden set ({rerun.earlier} earlier run(s)) by "
            f"{rerun.actor}: {rerun.reason}",
            highlight=False,
        )
