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
    Alphas,
    Evaluation,
    OfflineStats,
    OrderStats,
    Pairs,
    Scores,
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
_CANARY_ARM = "arm = 'canary' AND model = {candidate:String}"
_PRIMARY_ARM = "arm = 'primary' AND model = {primary:String}"


def _latency(status: str, latency: str) -> str:
    """A call's latency, a failed call's ``inf``: slower than any answer."""
    return f"if({status} = 'ok', {latency}, inf)"


def shadow_pairs(candidate: str, primary: str, *, where: str = "1") -> str:
    """Shadow pairs, one request answered by both models: columns ``c`` and ``p``."""
    return (
        f"SELECT {candidate} AS c, {primary} AS p FROM {{db}}.comparisons FINAL "
        f"WHERE {_WINDOW} AND {_PAIRED} AND {where}"
    )


def _valid(side: str) -> str:
    """Whether one side's structured answer is valid: its schema match, else its JSON parse."""
    return f"coalesce({side}_schema_valid, {side}_json_valid)"


def _numbered(table: str, value: str, *, id_column: str, where: str, arm: str) -> str:
    """One canary arm's rows of ``table``, numbered within each tick of event time.

    The order is pseudo-random (a hash of the row's id): it does not depend on the outcome.
    """
    return (
        "SELECT intDiv(toUnixTimestamp64Micro(event_time), {tick_us:UInt64}) AS b, "
        f"row_number() OVER (PARTITION BY b ORDER BY cityHash64({id_column}), {id_column}) "
        f"AS rn, {value} AS v FROM {{db}}.{table} FINAL WHERE {_WINDOW} AND {where} AND {arm}"
    )


def canary_pairs(table: str, value: str, *, id_column: str, where: str = "1") -> str:
    """Canary-arm rows matched one to one with primary-arm rows *of the same tick*.

    The i-th canary row of a tick (in hash order) pairs with the i-th primary row of that
    tick; rows beyond the smaller arm's count are left out. So the two samples have the same
    size in every tick and cover the same hours of the day in the same proportions, whatever
    the canary weight was when: a daily cycle cannot bias the comparison, and each pair's
    difference has mean zero for an identical candidate, at every tick.
    """

    def arm(condition: str) -> str:
        return _numbered(table, value, id_column=id_column, where=where, arm=condition)

    return (
        f"SELECT c.v AS c, p.v AS p FROM ({arm(_CANARY_ARM)}) AS c "
        f"INNER JOIN ({arm(_PRIMARY_ARM)}) AS p USING (b, rn)"
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
        alphas: each gate's error budgets (already split over the rollout's gates).
        tick_s: the controller's tick, the time strata of the canary's matched pairs.
        t_star: the sample size a gate's quantile bounds are tuned for.
    """

    def __init__(
        self,
        client: Client,
        database: str,
        *,
        alphas: Alphas,
        tick_s: float,
        t_star: Callable[[GateSpec], float],
    ) -> None:
        self.client = client
        self.db = database
        self.alphas = alphas
        self.tick_us = max(1, round(tick_s * 1_000_000))
        self.t_star = t_star
        self._sql: list[str] = []
        #: The query of every supported (stage, metric): the gate's (candidate, baseline).
        self.fetchers: Mapping[MetricKey, Fetcher] = {
            ("offline", "accuracy"): self._offline,
            ("shadow", "p95_latency"): self._shadow_latency,
            ("shadow", "error_rate"): self._shadow_errors,
            ("shadow", "preference"): self._preference,
            ("shadow", "invalid_output"): self._invalid_output,
            ("shadow", "tool_agreement"): self._tool_agreement,
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
        evaluation = evaluate_gate(
            gate, candidate, baseline, alphas=self.alphas, t_star=self.t_star(gate)
        )
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

    # -- pairs: shadow (one request, both models) and canary (matched within a tick) -------

    def _parameters(self, window: Window) -> dict[str, Any]:
        return {**window.parameters(), "tick_us": self.tick_us}

    def _pair_counts(self, pairs: str, window: Window) -> Pairs:
        rows = self._rows(f"SELECT c, p, count() FROM ({pairs}) GROUP BY c, p",
                          self._parameters(window))  # fmt: skip
        return Pairs({(float(c), float(p)): int(k) for c, p, k in rows})

    def _order_stats(self, gate: GateSpec, pairs: str, window: Window) -> GateStatistics:
        """Both sides' order statistics over the same pairs, at the ranks ``gate`` reads."""
        ((n,),) = self._rows(f"SELECT count() FROM ({pairs})", self._parameters(window))
        ranks = quantile_ratio_ranks(gate, int(n), alphas=self.alphas, t_star=self.t_star(gate))
        primary, candidate = OrderStats(0, {}), OrderStats(0, {})
        if ranks:
            (p, c), = self._rows(
                "SELECT arrayMap(r -> ps[r], {ranks:Array(UInt64)}), "
                "arrayMap(r -> cs[r], {ranks:Array(UInt64)}) FROM ("
                "SELECT arraySort(groupArray(p)) AS ps, arraySort(groupArray(c)) AS cs "
                f"FROM ({pairs}))",
                {**self._parameters(window), "ranks": ranks},
            )  # fmt: skip
            primary = OrderStats(int(n), dict(zip(ranks, map(float, p), strict=True)))
            candidate = OrderStats(int(n), dict(zip(ranks, map(float, c), strict=True)))
        return candidate, primary

    def _shadow_latency(self, gate: GateSpec, window: Window) -> GateStatistics:
        pairs = shadow_pairs(
            _latency("ifNull(candidate_status, '')", "ifNull(candidate_latency_ms, inf)"),
            _latency("primary_status", "primary_latency_ms"),
        )
        return self._order_stats(gate, pairs, window)

    def _shadow_errors(self, gate: GateSpec, window: Window) -> GateStatistics:
        pairs = shadow_pairs(
            "toFloat64(ifNull(candidate_status, '') != 'ok')", "toFloat64(primary_status != 'ok')"
        )
        return self._pair_counts(pairs, window), None

    def _invalid_output(self, gate: GateSpec, window: Window) -> GateStatistics:
        candidate, primary = _valid("candidate"), _valid("primary")
        pairs = shadow_pairs(
            f"toFloat64(NOT assumeNotNull({candidate}))",
            f"toFloat64(NOT assumeNotNull({primary}))",
            where=f"{candidate} IS NOT NULL AND {primary} IS NOT NULL",
        )
        return self._pair_counts(pairs, window), None

    def _tool_agreement(self, gate: GateSpec, window: Window) -> GateStatistics:
        rows = self._rows(
            "SELECT toFloat64(assumeNotNull(tool_calls_match)) AS v, count() "
            "FROM {db}.comparisons FINAL "
            f"WHERE {_WINDOW} AND {_PAIRED} AND tool_calls_match IS NOT NULL GROUP BY v",
            window.parameters(),
        )
        return _scores(rows), None

    def _preference(self, gate: GateSpec, window: Window) -> GateStatistics:
        rows = self._rows(
            "SELECT p, count() FROM (SELECT multiIf(preference = 'candidate', "
            "1.0, preference = 'primary', -1.0, 0.0) AS p FROM {db}.judgements FINAL "
            f"WHERE {_WINDOW} AND kind = 'pairwise' AND model = {{candidate:String}} "
            "AND preference IS NOT NULL) GROUP BY p",
            window.parameters(),
        )  # fmt: skip
        return _scores(rows), None

    def _canary_latency(self, gate: GateSpec, window: Window) -> GateStatistics:
        value = _latency("status", "latency_ms")
        return self._order_stats(gate, canary_pairs("requests", value, id_column="request_id"),
                                 window)  # fmt: skip

    def _canary_errors(self, gate: GateSpec, window: Window) -> GateStatistics:
        pairs = canary_pairs("requests", "toFloat64(status != 'ok')", id_column="request_id")
        return self._pair_counts(pairs, window), None

    def _faithfulness(self, gate: GateSpec, window: Window) -> GateStatistics:
        rows = self._rows(
            "SELECT arm, score, count() FROM {db}.judgements FINAL "
            f"WHERE {_WINDOW} AND kind = 'faithfulness' AND {_ARMS} AND score IS NOT NULL "
            "GROUP BY arm, score",
            window.parameters(),
        )
        by_arm: dict[str, dict[float, int]] = {"canary": {}, "primary": {}}
        for arm, score, count in rows:
            by_arm[str(arm)][float(score)] = int(count)
        return Scores(by_arm["canary"]), Scores(by_arm["primary"])

    def _csat(self, gate: GateSpec, window: Window) -> GateStatistics:
        pairs = canary_pairs("feedback", "toFloat64(csat)", id_column="feedback_id",
                             where="csat IS NOT NULL")  # fmt: skip
        return self._pair_counts(pairs, window), None

    # -- the controller's clock and memory -------------------------------------------------

    def arm_requests(self, window: Window) -> int:
        """The canary arm's requests (of the window's candidate) in ``window``."""
        (count,), = self._rows(
            f"SELECT count() FROM {{db}}.requests FINAL WHERE {_WINDOW} "
            "AND arm = 'canary' AND model = {candidate:String}",
            window.parameters(),
        )  # fmt: skip
        return int(count)

    def requests_per_hour(self, route: str, *, end: dt.datetime) -> float | None:
        """``route``'s stored requests per hour in the day before ``end``.

        Over the span the requests cover when that is shorter than a day; ``None`` when it
        is under an hour (too little to plan by).
        """
        (count, first, last), = self._rows(
            "SELECT count(), min(event_time), max(event_time) FROM {db}.requests "
            "WHERE route = {route:String} AND event_time >= {start:DateTime64(6)} "
            "AND event_time < {end:DateTime64(6)}",
            {"route": route, "start": end - dt.timedelta(days=1), "end": end},
        )  # fmt: skip
        span_h = (last - first).total_seconds() / 3600 if count else 0.0
        return int(count) / span_h if span_h >= 1.0 else None

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


def _scores(rows: Sequence[Sequence[Any]]) -> Scores:
    return Scores({float(value): int(count) for value, count in rows})
