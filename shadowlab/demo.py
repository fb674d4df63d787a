"""``shadowlab demo``: the whole loop in one process, on the embedded broker and chDB.

The simulator serves the scenario's two models and a judge over HTTP; the embedded Kafka
broker (Tansu) and chDB hold the events; every role (sink, shadow, join, judge, gates) runs
in a thread. The offline evaluation runs first and publishes its gate; then simulated users
are served one tick of event time at a time
(:class:`~shadowlab.testing.event_traffic.Lockstep`), each tick
routed with the flags the controller set on the previous one, until the controller promotes
or rolls back (or ``traffic.max_hours`` pass: ``held``). Every tick waits until every role
has processed what was produced, so the gates see all of it; at the end, what was produced
is reconciled with what ClickHouse holds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from clickhouse_connect.driver.client import Client
from rich.console import Console

from processors.evaluation.golden import flips
from processors.evaluation.store import store_run
from producers.emitter import EventProducer
from producers.live_router import LiveRouter
from shadowlab.core.errors import ShadowlabError
from shadowlab.core.flags import set_flags, start_rollout
from shadowlab.core.flags_io import FlagsClient, flags_options
from shadowlab.core.settings import Settings, load_settings
from shadowlab.demo_service import DemoTraffic, knowledge_base
from shadowlab.embedded.broker import EmbeddedBroker
from shadowlab.embedded.stack import open_stack
from shadowlab.offline_eval import print_run, publish_offline, run_evaluation
from shadowlab.roles import ROLE_NAMES, RoleSet
from shadowlab.rollout_ops import latest_decisions
from shadowlab.scenario import Outcome, Scenario
from shadowlab.testing.event_traffic import Lockstep
from shadowlab.testing.model_server import Simulator, SimulatorConfig

if TYPE_CHECKING:
    from processors.gates.role import GatesRole

#: Event tables reconciled against what was produced: (count key, table, id column).
RECONCILED = (
    ("requests", "requests", "request_id"),
    ("shadow_results", "shadow_results", "concat(request_id, '|', candidate)"),
    ("comparisons", "comparisons", "concat(request_id, '|', candidate_model)"),
    ("judgements", "judgements", "judgement_id"),
    ("feedback", "feedback", "feedback_id"),
)
TABLES = ("requests", "shadow_results", "comparisons", "judgements", "feedback",
          "routing_flags", "gate_decisions", "alerts", "golden_runs", "golden_items")  # fmt: skip


class DemoError(ShadowlabError):
    """The demo could not run to the end (a role failed, or the pipeline stalled)."""


@dataclass
class DemoResult:
    """What ``shadowlab demo`` reports (``--json``)."""

    scenario: str
    outcome: Outcome
    final_flags: dict[str, Any]
    gates: list[dict[str, Any]]
    counts: dict[str, Any]
    decisions: list[dict[str, Any]]
    reconciled: bool
    event_hours: float
    wall_s: float
    offline: dict[str, Any] = field(default_factory=dict)
    #: Wall seconds the ticks waited on each stage of the pipeline (the first one busy).
    waited_s: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON document (datetimes as ISO strings)."""
        return cast(dict[str, Any], json.loads(json.dumps(dataclasses.asdict(self), default=str)))


def demo_settings(scenario: Scenario, data_dir: Path, model_url: str, kafka: str) -> Settings:
    """Settings of the demo: the simulator's models, the scenario's route, plan and judge."""
    return load_settings(
        data_dir=data_dir,
        kafka={"bootstrap_servers": kafka},
        clickhouse={"dsn": None},
        models=[
            {
                "name": m.name,
                "base_url": model_url,
                "timeout_s": 30,
                "price_input_per_1k": m.price_input_per_1k,
                "price_output_per_1k": m.price_output_per_1k,
            }
            for m in scenario.models()
        ],
        routes=[
            {
                "name": scenario.route,
                "primary": scenario.primary.name,
                "candidates": [{"model": scenario.candidate.name, "sample_rate": 1.0}],
                "gates": {k: v.model_dump(exclude_none=True) for k, v in scenario.gates.items()},
            }
        ],
        judge={
            "model": "judge",
            "sample_rate": scenario.judge_sample_rate,
            "pairwise_sample_rate": scenario.pairwise_sample_rate,
            "concurrency": 8,
        },
        rollout=scenario.rollout.model_dump(),
        # few connections: httpx probes every idle one on each request
        shadow={"concurrency": 16, "batch_size": 200},
        sink={"max_wait_s": 0.05},
        join={"window_s": 30.0, "tick_s": 1.0, "retention_s": 120.0},
    )


@contextmanager
def _simulated_world(scenario: Scenario, data_dir: Path) -> Iterator[tuple[Settings, Any]]:
    """The simulator, the embedded broker and the stack (chDB, topics, migrations)."""
    config = SimulatorConfig(
        seed=scenario.seed,
        time_scale=scenario.time_scale,
        models=[m.profile() for m in scenario.models()],
    )
    log_path = data_dir / "logs" / "broker.log"
    with Simulator(config) as simulator, EmbeddedBroker(log_path=log_path) as broker:
        settings = demo_settings(scenario, data_dir, simulator.base_url, broker.bootstrap_servers)
        with open_stack(settings) as stack:
            yield settings, stack


class Demo:
    """One run of a scenario (see the module docstring)."""

    def __init__(self, scenario: Scenario, data_dir: Path, console: Console) -> None:
        self.scenario, self.data_dir, self.console = scenario, data_dir, console
        self.start = scenario.traffic.start
        self.items = knowledge_base(scenario.golden_items, scenario.seed)
        self.flags_published = 0
        #: Wall seconds each tick waited for the first busy stage (sink, shadow, join…).
        self.waited_s: dict[str, float] = {}
        self._last_look: float | None = None

    def run(
        self,
        on_tick: Callable[[Demo], None] | None = None,
        finish: Callable[[Client, str], None] | None = None,
    ) -> DemoResult:
        """Run the scenario to its conclusion and reconcile the counts.

        ``on_tick`` is called after each tick (live progress); ``finish`` with the ClickHouse
        client and database once everything is stored (e.g. to write the report).

        Raises:
            DemoError: a role failed or the pipeline did not keep up.
        """
        started = time.perf_counter()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _simulated_world(self.scenario, self.data_dir) as (settings, stack):
            self.settings, self.client = settings, cast(Client, stack.clickhouse)
            kafka = stack.kafka_config()
            self._begin_rollout(kafka)
            with LiveRouter(kafka, settings.topics.flags, **flags_options(settings)) as router:
                router.reader.wait_caught_up(10)
                self.router = router
                self.roles = RoleSet.build(
                    ROLE_NAMES, settings, kafka, stage_of=self._stage_of,
                    clickhouse=self.client, embedded=True,
                )  # fmt: skip
                with self.roles:
                    offline = self._offline_evaluation()
                    journal = self.data_dir / "events.journal"
                    topics = settings.topics
                    with EventProducer(
                        kafka, journal, requests_topic=topics.requests,
                        feedback_topic=topics.feedback,
                    ) as events:  # fmt: skip
                        self.traffic = DemoTraffic(
                            self.scenario, settings, router, events, self.items, self._drained
                        )
                        self._replay(on_tick)
                    self._wait_stored()
                final = router.flags(self.scenario.route)
            if finish is not None:
                finish(self.client, settings.clickhouse.database)
            return self._result(final, offline, time.perf_counter() - started)

    # -- steps -------------------------------------------------------------------------

    def _stage_of(self, route: str) -> str | None:
        flags = self.router.flags(route)
        return flags.stage if flags else None

    def _begin_rollout(self, kafka: dict[str, str]) -> None:
        s = self.scenario
        with FlagsClient(
            kafka, self.settings.topics.flags, **flags_options(self.settings)
        ) as flags:
            flags.publish(set_flags(None, route=s.route, primary=s.primary.name, canary=None,
                                    canary_weight_bp=0, actor="demo", reason="the service today",
                                    now=self.start))  # fmt: skip
            begin = start_rollout(flags.current(s.route), route=s.route,
                                  candidate=s.candidate.name, actor="demo",
                                  reason=f"demo scenario {s.name}", now=self.start)  # fmt: skip
            flags.publish(begin)
        self.flags_published = 2

    def _offline_evaluation(self) -> dict[str, Any]:
        """The golden-set comparison; its gate is published as the offline decision."""
        s = self.scenario
        items = self.items
        golden = self.data_dir / "golden.jsonl"
        golden.write_text("".join(i.model_dump_json() + "\n" for i in items), encoding="utf-8")
        self.console.rule(f"offline evaluation: {s.primary.name} → {s.candidate.name}")
        run = run_evaluation(
            self.settings, {"current": s.primary.name, "candidate": s.candidate.name}, items,
            golden, matcher="keyword", concurrency=32, judge="judge", threshold=0.95,
            route=s.route, as_of=self.start,
        )  # fmt: skip
        # the demo's clock is event time: the run happened just before the traffic starts
        run = dataclasses.replace(run, started_at=self.start, finished_at=self.start)
        flipped = flips(run.results["current"], run.results["candidate"])
        print_run(run, flipped.broken, flipped.fixed)
        store_run(self.client, self.settings.clickhouse.database, run)
        publish_offline(self.settings, self.client, run, s.route)
        gate = run.gate
        return {"outcome": gate.outcome, "ratio": gate.ratio, "ci_low": gate.ci_low,
                "ci_high": gate.ci_high, "items": len(items)}  # fmt: skip

    def _replay(self, on_tick: Callable[[Demo], None] | None) -> None:
        gates = cast("GatesRole", self.roles.roles["gates"])
        tick = self.settings.rollout.tick_s
        self.replay = Lockstep(self.traffic, lambda: gates, self.router, start=self.start,
                               tick_s=tick, timeout_s=120)  # fmt: skip
        steps = round(self.scenario.traffic.max_hours * 3600 / tick)
        while self.replay.steps < steps and not self.replay.finished():
            self._check_roles()
            self.replay.step()
            if on_tick is not None:
                on_tick(self)

    def _check_roles(self) -> None:
        failed = self.roles.failures()
        if failed:
            name, error = next(iter(failed.items()))
            raise DemoError(f"the {name} role failed: {type(error).__name__}: {error}")

    # -- draining ----------------------------------------------------------------------

    def _drained(self) -> bool:
        """Whether every role processed everything produced so far (and the sink stored it)."""
        self._check_roles()
        c: dict[str, Any] = self.roles.counters()
        topics, produced = self.settings.topics, self.traffic.counts
        written: dict[str, int] = c["sink"].written
        shadow, join, judge = c["shadow"], c["join"], c["judge"]
        results = shadow.results
        pending = {
            "sink.requests": written.get(topics.requests, 0) != produced["requests"],
            "sink.feedback": written.get(topics.feedback, 0) != produced["feedback"],
            "shadow": shadow.consumed != produced["requests"] or shadow.in_flight > 0,
            "sink.shadow": written.get(topics.shadow, 0) != results,
            "join": join.consumed != produced["requests"] + results,
            "sink.comparisons": written.get(topics.comparisons, 0)
            != sum(join.comparisons.values()),
            "judge": judge.consumed != produced["requests"] + results or judge.in_flight > 0,
            "sink.judgements": written.get(topics.judgements, 0) != sum(judge.judgements.values()),
        }
        now = time.perf_counter()
        waiting = [name for name, busy in pending.items() if busy]
        if waiting and self._last_look is not None:  # where the pipeline's time goes
            self.waited_s[waiting[0]] = self.waited_s.get(waiting[0], 0.0) + now - self._last_look
        self._last_look = now if waiting else None
        return not waiting

    def _wait_stored(self, timeout_s: float = 60.0) -> None:
        """Wait until the sink stored every event (the controller's own included)."""
        topics = self.settings.topics
        deadline = time.monotonic() + timeout_s
        while True:
            c: dict[str, Any] = self.roles.counters()
            gates, written = c["gates"], c["sink"].written
            changes = ("advance", "promote", "rollback")  # a hold changes no flags
            flags = self.flags_published + sum(gates.actions.get(a, 0) for a in changes)
            if (
                self._drained()
                and written.get(topics.decisions, 0) >= gates.decisions + 1
                and written.get(topics.flags, 0) >= flags
                and written.get(topics.alerts, 0) >= gates.alerts
            ):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"the sink did not store everything in {timeout_s:g} s: {c}")
            time.sleep(0.05)

    # -- the result --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Live progress: event time, flags, each gate's latest outcome and event counts."""
        flags = self.router.flags(self.scenario.route)
        return {
            "now": self.replay.now,
            "stage": flags.stage if flags else "?",
            "weight_pct": (flags.canary_weight_bp / 100) if flags else 0.0,
            "gates": latest_decisions(
                self.client, self.settings.clickhouse.database, self.scenario.route
            ),
            "counts": self._produced(),
        }

    def _produced(self) -> dict[str, int]:
        c: dict[str, Any] = self.roles.counters()
        return {
            "requests": self.traffic.counts["requests"],
            "shadow_results": c["shadow"].results,
            "comparisons": sum(c["join"].comparisons.values()),
            "judgements": sum(c["judge"].judgements.values()),
            "feedback": self.traffic.counts["feedback"],
        }

    def _result(self, final: Any, offline: dict[str, Any], wall_s: float) -> DemoResult:
        db, route = self.settings.clickhouse.database, self.scenario.route
        produced = self._produced()
        # the database name is validated by the settings, the tables and columns are constants
        count = "SELECT count() FROM {db}.{t} FINAL"
        stored = {t: self._scalar(count.format(db=db, t=t)) for t in TABLES}
        arms = {
            key.removeprefix("requests."): n
            for key, n in self.traffic.counts.items()
            if key.startswith("requests.")
        }
        reconcile: dict[str, dict[str, int]] = {}
        for key, table, ident in RECONCILED:
            unique = "SELECT uniqExact({i}) FROM {db}.{t} FINAL"
            distinct = self._scalar(unique.format(i=ident, db=db, t=table))
            reconcile[key] = {"produced": produced[key], "stored": stored[table],
                              "distinct": distinct}  # fmt: skip
        reconciled = all(r["produced"] == r["stored"] == r["distinct"] for r in reconcile.values())
        decisions = self._decisions()
        outcome = _outcome(final.stage if final else None, decisions)
        gates = [
            {"name": g["gate"], "stage": g["stage"], "outcome": g["outcome"], "value": g["value"],
             "baseline": g["baseline"], "threshold": g["threshold"], "ci_low": g["ci_low"],
             "ci_high": g["ci_high"], "n": g["n"], "action": g["action"]}
            for g in latest_decisions(self.client, db, route)
        ]  # fmt: skip
        hours = (self.replay.now - self.start).total_seconds() / 3600
        return DemoResult(
            scenario=self.scenario.name, outcome=outcome,
            final_flags={"primary": final.primary, "canary": final.canary,
                         "canary_weight_bp": final.canary_weight_bp, "override": final.override,
                         "stage": final.stage, "version": final.version},
            gates=gates,
            counts={**produced, "requests_by_arm": arms, "tables": stored,
                    "reconcile": reconcile, "join_outcomes": self._join_outcomes()},
            decisions=decisions, reconciled=reconciled, event_hours=hours, wall_s=wall_s,
            offline=offline, waited_s={k: round(v, 1) for k, v in self.waited_s.items()},
        )  # fmt: skip

    def _join_outcomes(self) -> dict[str, int]:
        """How the join handled each event, by outcome.

        ``unexpected``: a result for a request it read after the stage moved on (it expected
        no candidate); ``orphan``: results whose request never came.
        """
        c: dict[str, Any] = self.roles.counters()
        return {str(k): int(v) for k, v in sorted(c["join"].outcomes.items())}

    def _scalar(self, sql: str) -> int:
        return int(self.client.query(sql).result_rows[0][0])

    def _decisions(self) -> list[dict[str, Any]]:
        """The rollout's decisions in order: the offline gate, then every action's gates."""
        columns = ("decision_id", "stage", "gate", "outcome", "action", "value", "baseline",
                   "threshold", "ci_low", "ci_high", "n", "window_start", "window_end")  # fmt: skip
        template = (
            "SELECT {columns} FROM {db}.gate_decisions FINAL WHERE route = {{route:String}} "
            "AND (action IN ('advance', 'promote', 'rollback') "
            "OR stage = 'offline' AND startsWith(decision_id, 'eval-')) "
            "ORDER BY window_end, stage, gate"
        )
        # constants and the settings' validated database name
        sql = template.format(columns=", ".join(columns), db=self.settings.clickhouse.database)
        rows = self.client.query(sql, parameters={"route": self.scenario.route}).result_rows
        return [dict(zip(columns, row, strict=True)) for row in rows]


def _outcome(stage: str | None, decisions: list[dict[str, Any]]) -> Outcome:
    if stage == "promoted":
        return "promoted"
    if stage == "rolled_back":
        rollbacks = [d for d in decisions if d["action"] == "rollback"]
        return "rejected" if rollbacks and rollbacks[0]["stage"] == "offline" else "rolled_back"
    return "held"
