"""Where a golden-set run goes: ClickHouse (``golden_runs``, ``golden_items``) and the gate.

The offline gate's outcome is also a :class:`~schemas.GateDecision` (gate ``accuracy``,
stage ``offline``, id ``eval-<run id>``): the rollout controller advances a route from
``offline`` to ``shadow`` on the newest one for its candidate. Its audit text (``sql``) names
the golden set by its digest, and a re-run on a used set
(:mod:`processors.evaluation.reruns`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client

from processors.evaluation.golden import GateResult, ItemResult, ModelSummary
from processors.evaluation.reruns import Rerun, audit_lines
from processors.gates.queries import OFFLINE_DECISION_PREFIX
from schemas import GateDecision


@dataclass(frozen=True)
class EvalRun:
    """Everything one ``shadowlab eval`` produced."""

    run_id: str
    started_at: dt.datetime
    finished_at: dt.datetime
    golden_file: str
    #: SHA-256 of the golden file's bytes (``golden_runs.golden_sha256``).
    golden_sha256: str
    #: The golden set's identity: :func:`processors.evaluation.reruns.golden_digest`.
    golden_digest: str
    matcher: str
    route: str | None
    summaries: Mapping[str, ModelSummary]  # by role: "current", "candidate"
    results: Mapping[str, Sequence[ItemResult]]  # by role
    gate: GateResult


_RUN_COLUMNS = (
    "run_id", "started_at", "finished_at", "golden_file", "golden_sha256", "route", "matcher",
    "role", "model", "items", "accuracy", "faithfulness", "faithfulness_scored", "p50_ms",
    "p95_ms", "error_rate", "cost_per_1k_usd", "gate_outcome", "gate_ratio", "gate_ci_low",
    "gate_ci_high", "gate_threshold",
)  # fmt: skip
_ITEM_COLUMNS = (
    "run_id", "role", "model", "item_id", "status", "correct", "answer", "latency_ms",
    "prompt_tokens", "completion_tokens", "cost_usd", "usage_known", "faithfulness", "error",
)  # fmt: skip


def store_run(client: Client, database: str, run: EvalRun) -> int:
    """Insert the run's summary rows and item rows; returns the item rows written.

    Both tables are ReplacingMergeTrees keyed by run id, so storing a run twice is harmless.
    """
    gate = run.gate
    runs = [
        [
            run.run_id, run.started_at, run.finished_at, run.golden_file, run.golden_sha256,
            run.route, run.matcher, role, s.model, s.items, s.accuracy, s.faithfulness,
            s.faithfulness_scored, s.p50_ms, s.p95_ms, s.error_rate, s.cost_per_1k_usd,
            gate.outcome, gate.ratio, gate.ci_low, gate.ci_high, gate.threshold,
        ]
        for role, s in run.summaries.items()
    ]  # fmt: skip
    client.insert(f"{database}.golden_runs", runs, column_names=list(_RUN_COLUMNS))
    items = [
        [
            run.run_id, role, run.summaries[role].model, r.item_id, r.status, r.correct,
            r.answer, r.latency_ms, r.prompt_tokens, r.completion_tokens, r.cost_usd,
            r.cost_usd is not None, r.faithfulness, r.error,
        ]
        for role, results in run.results.items()
        for r in results
    ]  # fmt: skip
    client.insert(f"{database}.golden_items", items, column_names=list(_ITEM_COLUMNS))
    return len(items)


def offline_decision(run: EvalRun, route: str, rerun: Rerun | None = None) -> GateDecision:
    """The run's pre-deployment gate as the decision the rollout controller reads.

    ``rerun``: the run re-uses a golden set, on the record (its audit text says so).
    """
    gate = run.gate
    current, candidate = run.summaries["current"], run.summaries["candidate"]
    return GateDecision(
        decision_id=f"{OFFLINE_DECISION_PREFIX}{run.run_id}",
        route=route,
        gate="accuracy",
        stage="offline",
        window_start=run.started_at,
        window_end=run.finished_at,
        decided_at=run.finished_at,
        n=candidate.items,
        value=gate.ratio,
        baseline=current.accuracy,
        threshold=gate.threshold,
        ci_low=gate.ci_low,
        ci_high=gate.ci_high,
        outcome=gate.outcome,
        sql="\n".join(
            [
                f"golden set {run.golden_file} (file sha256 {run.golden_sha256[:12]}), "
                f"{gate.resamples} paired bootstrap resamples",
                *audit_lines(run.golden_digest, candidate.items, rerun),
            ]
        ),
        candidate=candidate.model,
        baseline_model=current.model,
    )


def run_json(run: EvalRun, flipped: Mapping[str, list[str]]) -> dict[str, object]:
    """The run as the ``--json`` document."""
    return {
        "run_id": run.run_id,
        "golden_file": run.golden_file,
        "golden_sha256": run.golden_sha256,
        "golden_digest": run.golden_digest,
        "matcher": run.matcher,
        "route": run.route,
        "models": {role: dataclasses.asdict(s) for role, s in run.summaries.items()},
        "gate": dataclasses.asdict(run.gate),
        "flipped": dict(flipped),
        "items": {
            role: [dataclasses.asdict(r) for r in results] for role, results in run.results.items()
        },
    }
