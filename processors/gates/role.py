"""``shadowlab run gates``: the rollout controller's I/O shell.

Every ``poll_s`` wall seconds, for each route with a rollout in progress, it reads the
event-time watermark (newest stored event minus ``lateness_s``) and evaluates every tick
boundary (multiples of ``tick_s`` of event time) it has not evaluated yet, in order: the
gates' queries, :func:`~processors.gates.controller.decide_tick`, then

1. the new flags to ``routing.flags`` first (a rollback reaches every Router at once),
2. one :class:`~schemas.GateDecision` per gate to ``gate.decisions``,
3. new :class:`~schemas.Alert` s to ``gate.alerts`` and the webhook, one per breach.

So replayed traffic is decided tick by tick exactly as live traffic. Its state is the
flags (stage, weight, ``stage_since``, ``step_since``, ``paused``) and what ClickHouse holds
(the last tick decided, the alerts raised): a restarted controller goes on where it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import threading
import time
import urllib.request
from collections.abc import Mapping

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import Error as ClickHouseDriverError
from confluent_kafka import Producer

from processors.gates.controller import (
    ACTIVE_STAGES,
    AlertNote,
    TickResult,
    decide_tick,
    eta_hours,
    stage_gates,
)
from processors.gates.metrics import gate_alphas, planned_samples
from processors.gates.queries import GateQueries, GateResult, Window
from schemas import Alert, GateDecision, RoutingFlags
from shadowlab.core.errors import FlagsConflictError
from shadowlab.core.flags import advance
from shadowlab.core.flags_io import FlagsClient, flags_options
from shadowlab.core.kafka import producer_config
from shadowlab.core.plan import GateSpec, route_gates
from shadowlab.core.settings import Settings

log = logging.getLogger(__name__)
#: Ticks evaluated per route per poll, so one route's backlog cannot starve the others.
MAX_TICKS_PER_POLL = 500


@dataclasses.dataclass
class GatesCounters:
    """What the controller did so far."""

    ticks: int = 0
    decisions: int = 0
    actions: dict[str, int] = dataclasses.field(default_factory=dict)
    alerts: int = 0
    webhook_failures: int = 0
    #: Polls that failed (ClickHouse unreachable, a concurrent flags change) and were retried.
    failures: int = 0
    #: ``time.monotonic()`` when each kind of action was last decided (for latency checks).
    decided_at: dict[str, float] = dataclasses.field(default_factory=dict)


def next_tick(after: dt.datetime, tick_s: float) -> dt.datetime:
    """The first tick boundary (a multiple of ``tick_s`` since the epoch) after ``after``."""
    seconds = after.timestamp()
    return dt.datetime.fromtimestamp((math.floor(seconds / tick_s) + 1) * tick_s, dt.UTC)


class GatesRole:
    """The rollout controller of every route with flags (see the module docstring).

    Args:
        settings: the settings (rollout plan, routes, topics).
        connection: librdkafka connection config.
        client: ClickHouse client (migrations applied).
    """

    def __init__(self, settings: Settings, connection: Mapping[str, str], client: Client) -> None:
        self.settings = settings
        self.plan = settings.rollout
        self.counters = GatesCounters()
        self._connection = dict(connection)
        self._client = client
        self._stop = threading.Event()
        self._last: dict[str, dt.datetime] = {}
        self._sent: dict[str, set[str]] = {}
        self._producer: Producer | None = None
        #: Each route's measured requests per hour, and the stage start it was measured for.
        self._traffic: dict[str, float] = {}
        self._traffic_of: dict[str, dt.datetime] = {}

    def gates(self, route: str) -> tuple[GateSpec, ...]:
        """The route's enabled gates (defaults with the route's overrides)."""
        config = next((r for r in self.settings.routes if r.name == route), None)
        return route_gates(self.plan, config.gates if config else None)

    def queries(self, route: str) -> GateQueries:
        """The gate queries of ``route``: α split over its gates, ``t_star`` from its traffic."""

        def t_star(gate: GateSpec) -> float:
            return planned_samples(gate, self.plan, requests_per_h=self._traffic.get(route))

        return GateQueries(
            self._client, self.settings.clickhouse.database,
            alphas=gate_alphas(self.plan.alpha, self.gates(route)), tick_s=self.plan.tick_s,
            t_star=t_star,
        )  # fmt: skip

    def _measure_traffic(
        self, queries: GateQueries, flags: RoutingFlags, tick: dt.datetime
    ) -> None:
        """The route's requests per hour over the day before its stage began (once a stage).

        Measured before the stage, so it cannot depend on what the stage's gates see; until
        a day of history exists, over what there is (at least an hour), else unknown.
        """
        stage_start = flags.stage_since or tick
        if self._traffic_of.get(flags.route) == stage_start:
            return
        self._traffic_of[flags.route] = stage_start
        rate = queries.requests_per_hour(flags.route, end=stage_start)
        if rate is None:
            self._traffic.pop(flags.route, None)
        else:
            self._traffic[flags.route] = rate

    def last_tick(self, route: str) -> dt.datetime | None:
        """The last tick evaluated for ``route`` by this process (``None`` before the first)."""
        return self._last.get(route)

    def stop(self) -> None:
        """Finish the current poll and return from :meth:`run`."""
        self._stop.set()

    def run(self) -> None:
        """Poll until stopped."""
        self._stop.clear()
        self._producer = Producer(producer_config(self._connection, **{"linger.ms": "0"}))
        topic = self.settings.topics.flags
        try:
            with FlagsClient(self._connection, topic, **flags_options(self.settings)) as flags:
                while not self._stop.is_set():
                    for route, current in sorted(flags.all().items()):
                        if current.stage in ACTIVE_STAGES:
                            self._poll_safely(flags, route)
                    self._producer.flush(10)
                    self._stop.wait(self.plan.poll_s)
        finally:
            self._producer.flush(10)

    def _poll_safely(self, flags: FlagsClient, route: str) -> None:
        """:meth:`poll_route`, retried at the next poll when ClickHouse or the flags fail.

        A tick counts as done only once its flags change (if any) is in force, so nothing
        is skipped: the same tick is evaluated again, with whatever flags are then in force.
        """
        try:
            self.poll_route(flags, route)
        except ClickHouseDriverError as exc:
            self.counters.failures += 1
            log.warning("gates of %s: ClickHouse failed (%s); retrying", route, exc)
        except (FlagsConflictError, TimeoutError) as exc:
            self.counters.failures += 1
            log.warning("gates of %s: flags not written (%s); re-evaluating", route, exc)

    def poll_route(self, flags: FlagsClient, route: str) -> None:
        """Evaluate every tick of ``route`` up to its watermark."""
        current = flags.current(route)
        if current is None or current.canary is None:
            return
        queries = self.queries(route)
        not_after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.plan.max_ahead_s)
        newest = queries.watermark(route, not_after=not_after)
        if newest is None:
            return
        watermark = newest - dt.timedelta(seconds=self.plan.lateness_s)
        if route not in self._last:
            start = watermark - dt.timedelta(seconds=self.plan.tick_s)  # the tick ≤ watermark
            self._last[route] = _resume_after(queries.last_tick(route), current, start)
            self._sent[route] = queries.sent_alerts(route)
        for _ in range(MAX_TICKS_PER_POLL):
            tick = next_tick(self._last[route], self.plan.tick_s)
            current = flags.current(route)
            if tick > watermark or current is None or current.stage not in ACTIVE_STAGES:
                return
            self._tick(flags, queries, current, tick)
            self._last[route] = tick

    def _tick(
        self, flags: FlagsClient, queries: GateQueries, current: RoutingFlags, tick: dt.datetime
    ) -> None:
        wall = dt.datetime.now(dt.UTC)
        if current.stage != "offline" and (
            current.stage_since is None or current.step_since is None
        ):
            adopted = advance(current, stage=current.stage, weight=current.canary_weight_bp,
                              event_time=tick, actor="shadowlab-gates", now=wall,
                              reason="the controller took over this rollout")  # fmt: skip
            flags.publish(adopted.model_copy(update={"stage_since": tick}))
            return
        gates = self.gates(current.route)
        self._measure_traffic(queries, current, tick)
        window = Window(current.route, current.primary, current.canary or "",
                        current.stage_since or tick, tick)  # fmt: skip
        results = {g.key: queries.evaluate(g, window) for g in stage_gates(gates, current.stage)}
        evaluations = {key: r.evaluation for key, r in results.items()}
        step_requests = None
        if current.stage == "canary":
            step = dataclasses.replace(window, start=current.step_since or window.start)
            step_requests = queries.arm_requests(step)
        result = decide_tick(
            current, evaluations, gates, self.plan, tick, wall, step_requests=step_requests
        )
        self.counters.decided_at[result.action] = time.monotonic()
        if result.flags is not None:
            flags.publish(result.flags)
        self.counters.ticks += 1
        self.counters.actions[result.action] = self.counters.actions.get(result.action, 0) + 1
        self._record(current, window, results, result)

    def _record(
        self,
        flags: RoutingFlags,
        window: Window,
        results: Mapping[str, GateResult],
        result: TickResult,
    ) -> None:
        topics = self.settings.topics
        assert self._producer is not None  # noqa: S101 - set by run()
        for key, gate_result in results.items():
            decision = _decision(flags, window, key, gate_result, result)
            self._producer.produce(topics.decisions, key=flags.route, value=decision.to_json())
            self.counters.decisions += 1
        for note in result.alerts:
            if note.key in self._sent[flags.route]:
                continue
            self._sent[flags.route].add(note.key)
            alert = _alert(flags, note, window.end)
            self._producer.produce(topics.alerts, key=flags.route, value=alert.to_json())
            self.counters.alerts += 1
            self._webhook(alert)
        self._producer.poll(0)

    def _webhook(self, alert: Alert) -> None:
        url = self.plan.webhook_url
        if url is None:
            return
        body = json.dumps({"text": f"[{alert.severity}] {alert.message}"}).encode()
        request = urllib.request.Request(  # noqa: S310 - the operator's configured URL
            url.get_secret_value(), data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.plan.webhook_timeout_s):  # noqa: S310
                pass
        except OSError as exc:  # never the URL: it embeds the webhook's token
            self.counters.webhook_failures += 1
            log.warning(
                "alert webhook failed (%s); the alert is on the alerts topic", type(exc).__name__
            )


def _resume_after(
    recorded: dt.datetime | None, flags: RoutingFlags, otherwise: dt.datetime
) -> dt.datetime:
    """Where a (re)started controller goes on: after the last tick it decided.

    That tick is the newer of the last decision stored in ClickHouse and the tick of the
    last action (``step_since`` in the flags): the sink may not have stored the newest
    decisions yet, but the flags are always current. A tick re-decided in that gap gets
    the same decision id, so ClickHouse keeps one of the two identical decisions.
    """
    known = [t for t in (recorded, flags.step_since, flags.stage_since) if t is not None]
    return max(known) if known else otherwise


def _decision(
    flags: RoutingFlags, window: Window, key: str, gate_result: GateResult, result: TickResult
) -> GateDecision:
    evaluation = gate_result.evaluation
    involved = key in result.gates or result.action in ("advance", "promote")
    action = result.action if involved or result.action == "hold" else "none"
    stage, name = key.split(".", 1)
    return GateDecision(
        decision_id=f"{flags.route}:{key}:{window.end.isoformat()}",
        route=flags.route,
        gate=name,
        stage=stage,  # type: ignore[arg-type]
        window_start=window.start,
        window_end=window.end,
        decided_at=window.end,
        n=evaluation.n,
        value=_finite(evaluation.value),
        baseline=_finite(evaluation.baseline),
        threshold=evaluation.threshold,
        ci_low=evaluation.ci_low,
        ci_high=evaluation.ci_high,
        outcome=evaluation.outcome,
        action=action,
        sql=gate_result.sql[:20_000],
        flags_version=flags.version,
        candidate=flags.canary,
        baseline_model=flags.primary,
        margin=evaluation.margin,
        needed_n=evaluation.needed_n,
        eta_h=eta_hours(evaluation, (window.end - window.start).total_seconds() / 3600),
    )


def _alert(flags: RoutingFlags, note: AlertNote, event_time: dt.datetime) -> Alert:
    return Alert(
        alert_id=note.key,
        route=flags.route,
        kind=note.kind,
        severity=note.severity,
        event_time=event_time,
        message=note.message[:2000],
        gate=note.gate,
        flags_version=flags.version,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
