"""``shadowlab eval``: the golden-set comparison of the current model and a candidate.

Exit status: 0 the pre-deployment gate passed, 1 it failed, 2 inconclusive, 3 a usage or
input error (bad option, unknown model, unreadable file, unreachable endpoint, a golden set
that already decided the route's offline gate without ``--rerun-reason``). The work is
:mod:`shadowlab.offline_eval`'s; this module is the command.

With ``--route`` (and storing), the repeated-test rule
(:mod:`processors.evaluation.reruns`) is checked on ClickHouse before any model is called,
and again just before the decision is published (a concurrent run may have published one in
between). ClickHouse is where the decision goes and where the controller reads it, so when it
cannot be reached the command stops at once: nothing is published, nothing is spent.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated

import typer

from processors.evaluation.golden import Matcher, flips
from processors.evaluation.reruns import Rerun, golden_digest
from processors.evaluation.store import run_json, store_run
from shadowlab.cli_flags import ActorOption, actor_name
from shadowlab.cli_state import clickhouse_client, current_settings, err_console, use_config
from shadowlab.core.errors import ConfigError
from shadowlab.offline_eval import (
    check_golden_set,
    print_run,
    publish_offline,
    read_golden,
    run_evaluation,
)

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
    rerun_reason: Annotated[
        str | None,
        typer.Option(
            help="Why a golden set that already decided this route's offline gate for the "
            "candidate is used again (recorded in the decision and alerted)."
        ),
    ] = None,
    actor: ActorOption = None,
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
    with ExitStack() as stack:
        # opened first: an unreachable ClickHouse stops the command before any model call
        client = stack.enter_context(clickhouse_client(settings, migrate=True)) if store else None
        digest, who = golden_digest(items), actor_name(actor)

        def policy() -> Rerun | None:
            if client is None or route is None:
                return None  # nothing is published
            return check_golden_set(settings, client, route=route, candidate=candidate,
                                    digest=digest, golden=golden, reason=rerun_reason,
                                    actor=who)  # fmt: skip

        policy()  # refuses a used golden set before spending on it
        run = run_evaluation(
            settings, models, items, golden, matcher=chosen, concurrency=concurrency,
            judge=judge, threshold=threshold, route=route,
        )  # fmt: skip
        flipped = flips(run.results["current"], run.results["candidate"])
        print_run(run, flipped.broken, flipped.fixed)
        if client is not None:
            store_run(client, settings.clickhouse.database, run)
            if route is not None:
                rerun = policy()  # again: another run may have published in the meantime
                if rerun is None and rerun_reason is not None:
                    err_console.print("the first decision on this golden set: --rerun-reason "
                                      "is not recorded")  # fmt: skip
                publish_offline(settings, client, run, route, rerun=rerun)
    if json_out is not None:
        document = run_json(run, {"broken": flipped.broken, "fixed": flipped.fixed})
        json_out.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    raise typer.Exit(EXIT[run.gate.outcome])
