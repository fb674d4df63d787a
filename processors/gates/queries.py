"""The ClickHouse side of the gates: each gate's query over an event-time window.

Every value (route, models, window bounds, ranks) is a bound parameter (``{name:Type}``),
never formatted into the SQL; only the database name, checked by the settings, is. Tables
are read ``FINAL``, so a redelivered event never counts twice.

The queries only fetch each gate's sufficient statistics (counts, sums, sums of squares,
order statistics), of the kinds :data:`processors.gates.metrics.GATE_METRICS` names;
:func:`processors.gates.metrics.evaluate_gate` turns them into outcomes. The rollups
(``calls_1m``) are refreshed once a minute, so they may trail the watermark: gates read the
event tables, whose sorting key ``(route, event_time, …)`` serves exactly these range scans.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from clickhouse_connect.driver.client import Client

from processors.gates.evaluate import (
    Evaluation,
    MeanStats,
    OfflineStats,
    OrderStats,
    RateStats,
    quantile_ratio_ranks,
)
from processors.gates.metrics import GateStatistics, MetricKey, evaluate_gate, metric_key
from schemas import Outcome
from shadowlab.core.plan import GateSpec

#: Prefix of the decision ids ``shadowlab eval`` publishes for the offline gate.
OFFLINE_DECISION_PREFIX = "eval-"


@dataclass(frozen=True)
class Window:
    """One route's rollout over one event-time window ``[start, end)``."""

    route: str
    primary: str
    candidate: str
    start: dt.datetime
    end: dt.datetime

    def parameters(self) -> dict[str, Any]:
        """The window as bound query parameters."""
        return {
            "route": self.route,
            "primary": self.primary,
            "candidate": self.candidate,
            "start": self.start,
            "end": self.end,
        }


#: Fetches one gate's statistics over one window: (candidate, baseline).
Fetcher = Callable[[GateSpec, Window], GateStatistics]


_WINDOW = (
    "route = {route:String} AND event_time >= {start:DateTime64(6)} "
    "AND event_time < {end:DateTime64(6)}"
)
_ARMS = (
    "((arm = 'canary' AND model = {candidate:String}) "
    "OR (arm = 'primary' AND model = {primary:String}))"
)
_PAIRED = (
    "status = 'joined' AND candidate_model = {candidate:String} "
    "AND primary_model = {primary:String}"
)


@dataclass(frozen=True)
class GateResult:
    """A gate's evaluation and the SQL (with its parameters) behind it."""

    evaluation: Evaluation
    sql: str


class GateQueries:
    """Runs the gate queries of one ClickHouse database.

    Args:
        client: a clickhouse-connect client.
        database: shadowlab's database.
        alpha: each gate's α (already split over the rollout's gates).
        t_star: the sample size the intervals are tuned for.
    """

    def __init__(self, client: Client, database: str, *, alpha: float, t_star: float) -> None:
        self.client = client
        self.db = database
        self.alpha = alpha
        self.t_star = t_star
        self._sql: list[str] = []
        #: The query of every supported (stage, metric): the gate's (candidate, baseline).
        self.fetchers: Mapping[MetricKey, Fetcher] = {
            ("offline", "accuracy"): self._offline,
            ("shadow", "p95_latency"): self._shadow_latency,
            ("shadow", "error_rate"): self._shadow_errors,
            ("shadow", "preference"): self._preference,
            ("canary", "p95_latency"): self._canary_latency,
            ("canary", "error_rate"): self._canary_errors,
            ("canary", "faithfulness"): self._faithfulness,
            ("canary", "csat"): self._csat,
        }

    def _rows(self, sql: str, parameters: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        text = sql.replace("{db}", self.db)
        self._sql.append(f"{text}\n-- parameters: {json.dumps(parameters, default=str)}")
        rows: Sequence[Sequence[Any]] = self.client.query(
            text, parameters=dict(parameters)
        ).result_rows
        return rows

    def evaluate(self, gate: GateSpec, window: Window) -> GateResult:
        """Fetch ``gate``'s statistics over ``window`` and evaluate them.

        Raises:
            ValueError: the gate's (stage, metric) is not supported (before any query).
        """
        self._sql = []
        candidate, baseline = self.fetchers[metric_key(gate)](gate, window)
        evaluation = evaluate_gate(gate, candidate, baseline, alpha=self.alpha, t_star=self.t_star)
        return GateResult(evaluation, ";\n".join(self._sql))

    # -- offline ---------------------------------------------------------------------------

    def _offline(self, gate: GateSpec, window: Window) -> GateStatistics:
        rows = self._rows(
            "SELECT outcome, value FROM {db}.gate_decisions FINAL "
            "WHERE route = {route:String} AND stage = 'offline' AND gate = {gate:String} "
            "AND candidate = {candidate:String} AND startsWith(decision_id, {prefix:String}) "
            "ORDER BY decided_at DESC LIMIT 1",
            {**window.parameters(), "gate": gate.name, "prefix": OFFLINE_DECISION_PREFIX},
        )
        if not rows:
            return OfflineStats(), None
        outcome, value = rows[0]
        return OfflineStats(cast(Outcome, outcome), value), None

    # -- shadow: paired comparisons --------------------------------------------------------

    def _shadow_latency(self, gate: GateSpec, window: Window) -> GateStatistics:
        where = f"{_WINDOW} AND {_PAIRED} AND primary_status = 'ok' AND candidate_status = 'ok'"
        (n,), = self._rows(f"SELECT count() FROM {{db}}.comparisons FINAL WHERE {where}",
                           window.parameters())  # fmt: skip
        ranks = quantile_ratio_ranks(gate, int(n), alpha=self.alpha, t_star=self.t_star)
        primary, candidate = OrderStats(0, {}), OrderStats(0, {})
        if ranks:
            (p, c), = self._rows(
                "SELECT arrayMap(r -> p[r], {ranks:Array(UInt64)}), "
                "arrayMap(r -> c[r], {ranks:Array(UInt64)}) FROM ("
                "SELECT arraySort(groupArray(primary_latency_ms)) AS p, "
                "arraySort(groupArray(candidate_latency_ms)) AS c "
                f"FROM {{db}}.comparisons FINAL WHERE {where})",
                {**window.parameters(), "ranks": ranks},
            )  # fmt: skip
            primary = OrderStats(int(n), dict(zip(ranks, p, strict=True)))
            candidate = OrderStats(int(n), dict(zip(ranks, c, strict=True)))
        return candidate, primary

    def _shadow_errors(self, gate: GateSpec, window: Window) -> GateStatistics:
        (n, total, total_sq, primary_errors), = self._rows(
            "SELECT count(), sum(d), sum(d * d), countIf(primary_status != 'ok') FROM ("
            "SELECT toFloat64(candidate_status != 'ok') - toFloat64(primary_status != 'ok') "
            f"AS d, primary_status FROM {{db}}.comparisons FINAL WHERE {_WINDOW} AND {_PAIRED})",
            window.parameters(),
        )  # fmt: skip
        return _mean_stats((n, total, total_sq)), RateStats(int(n), int(primary_errors))

    def _preference(self, gate: GateSpec, window: Window) -> GateStatistics:
        (n, total, total_sq), = self._rows(
            "SELECT count(), sum(p), sum(p * p) FROM (SELECT multiIf(preference = 'candidate', "
            "1.0, preference = 'primary', -1.0, 0.0) AS p FROM {db}.judgements FINAL "
            f"WHERE {_WINDOW} AND kind = 'pairwise' AND model = {{candidate:String}} "
            "AND preference IS NOT NULL)",
            window.parameters(),
        )  # fmt: skip
        return _mean_stats((n, total, total_sq)), None

    # -- canary: canary arm against primary arm --------------------------------------------

    def _by_arm(self, sql: str, window: Window, **extra: Any) -> dict[str, Sequence[Any]]:
        rows = self._rows(sql, {**window.parameters(), **extra})
        return {str(row[0]): row[1:] for row in rows}

    def _canary_latency(self, gate: GateSpec, window: Window) -> GateStatistics:
        where = f"{_WINDOW} AND {_ARMS} AND status = 'ok'"
        counts = self._by_arm(
            f"SELECT arm, count() FROM {{db}}.requests FINAL WHERE {where} GROUP BY arm",
            window,
        )
        samples = {}
        for arm, model in (("canary", window.candidate), ("primary", window.primary)):
            n = int(counts.get(arm, (0,))[0])
            ranks = quantile_ratio_ranks(gate, n, alpha=self.alpha, t_star=self.t_star)
            values: list[float] = []
            if ranks:
                (values,), = self._rows(
                    "SELECT arrayMap(r -> s[r], {ranks:Array(UInt64)}) FROM (SELECT "
                    f"arraySort(groupArray(latency_ms)) AS s FROM {{db}}.requests FINAL "
                    f"WHERE {_WINDOW} AND arm = {{arm:String}} AND model = {{model:String}} "
                    "AND status = 'ok')",
                    {**window.parameters(), "ranks": ranks, "arm": arm, "model": model},
                )  # fmt: skip
            samples[arm] = OrderStats(n, dict(zip(ranks, values, strict=True)))
        return samples["canary"], samples["primary"]

    def _canary_errors(self, gate: GateSpec, window: Window) -> GateStatistics:
        arms = self._by_arm(
            "SELECT arm, count(), countIf(status != 'ok') FROM {db}.requests FINAL "
            f"WHERE {_WINDOW} AND {_ARMS} GROUP BY arm",
            window,
        )
        canary, primary = (RateStats(*map(int, arms.get(a, (0, 0)))) for a in ("canary", "primary"))
        return canary, primary

    def _faithfulness(self, gate: GateSpec, window: Window) -> GateStatistics:
        arms = self._by_arm(
            "SELECT arm, count(), sum(score), sum(score * score) FROM {db}.judgements FINAL "
            f"WHERE {_WINDOW} AND kind = 'faithfulness' AND {_ARMS} AND score IS NOT NULL "
            "GROUP BY arm",
            window,
        )
        canary, primary = (_mean_stats(arms.get(a)) for a in ("canary", "primary"))
        return canary, primary

    def _csat(self, gate: GateSpec, window: Window) -> GateStatistics:
        arms = self._by_arm(
            "SELECT arm, count(), sum(csat), sum(csat * csat) FROM {db}.feedback FINAL "
            f"WHERE {_WINDOW} AND {_ARMS} AND csat IS NOT NULL GROUP BY arm",
            window,
        )
        canary, primary = (_mean_stats(arms.get(a)) for a in ("canary", "primary"))
        return canary, primary

    # -- the controller's clock and memory -------------------------------------------------

    def arm_requests(self, window: Window) -> int:
        """The canary arm's requests (of the window's candidate) in ``window``."""
        (count,), = self._rows(
            f"SELECT count() FROM {{db}}.requests FINAL WHERE {_WINDOW} "
            "AND arm = 'canary' AND model = {candidate:String}",
            window.parameters(),
        )  # fmt: skip
        return int(count)

    def watermark(self, route: str, *, not_after: dt.datetime) -> dt.datetime | None:
        """The newest event time of ``route``'s stored requests up to ``not_after``.

        ``None`` before any. Requests dated after ``not_after`` (the controller's wall clock
        plus the allowed skew) are not counted, so one event from the future cannot drag
        the clock. Comparisons, feedback and judgements arrive later than their request; the
        gate windows grow from the stage's start, so what arrives after a tick is counted at
        the next one instead of being lost.
        """
        value, found = self.client.query(
            f"SELECT max(event_time), count() > 0 FROM {self.db}.requests "
            "WHERE route = {route:String} AND event_time <= {not_after:DateTime64(6)}",
            parameters={"route": route, "not_after": not_after},
        ).result_rows[0]
        return value if found else None

    def last_tick(self, route: str) -> dt.datetime | None:
        """The last tick the controller recorded a decision for (``None`` if it never did)."""
        rows = self.client.query(
            f"SELECT max(decided_at), count() FROM {self.db}.gate_decisions "
            "WHERE route = {route:String} AND NOT startsWith(decision_id, {prefix:String})",
            parameters={"route": route, "prefix": OFFLINE_DECISION_PREFIX},
        ).result_rows
        return rows[0][0] if rows and rows[0][1] else None

    def sent_alerts(self, route: str) -> set[str]:
        """The ids of the alerts already raised for ``route``."""
        rows = self.client.query(
            f"SELECT DISTINCT alert_id FROM {self.db}.alerts WHERE route = {{route:String}}",
            parameters={"route": route},
        ).result_rows
        return {str(r[0]) for r in rows}


def _mean_stats(row: Sequence[Any] | None) -> MeanStats:
    if row is None:
        return MeanStats()
    n, total, total_sq = row
    return MeanStats(int(n), float(total or 0), float(total_sq or 0))
