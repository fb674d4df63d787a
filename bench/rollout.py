"""A whole rollout replayed through the real stack: embedded Kafka, chDB, sink and gates roles.

Simulated traffic at 1 request per second of event time (20 % rated by users, 10 % judged) is
routed by a live Router that follows the controller's flags, one 5-minute tick at a time,
with the default plan and gates, until the controller promotes or rolls back. Prints the
outcome, event time to the decision, wall time, the replay speed-up, rows per table, and
each gate's final decision (what `shadowlab gates status` shows).

    python bench/rollout.py [--scenario same|slower|errors] [--hours 72]
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from processors.gates.montecarlo import ModelProfile, slower
from processors.gates.role import GatesRole
from producers.live_router import LiveRouter
from schemas import GateDecision
from shadowlab.core.flags import set_flags, start_rollout
from shadowlab.core.flags_io import FlagsClient
from shadowlab.core.settings import load_settings
from shadowlab.embedded.stack import open_stack
from shadowlab.rollout_ops import latest_decisions
from shadowlab.testing import produce
from shadowlab.testing.event_traffic import Lockstep, TrafficDriver
from sinks.clickhouse import ClickHouseSink
from sinks.role import SinkRole

ROUTE = "support-answer"
START = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
SCENARIOS = {
    "same": ModelProfile(),
    "slower": slower(ModelProfile(), 1.3),
    "errors": replace(ModelProfile(), error_rate=0.05),
}


def _begin(kafka: dict[str, str], settings: Any) -> None:
    with FlagsClient(kafka, settings.topics.flags) as flags:
        now = dt.datetime.now(dt.UTC)
        flags.publish(set_flags(None, route=ROUTE, primary="gpt-4", canary=None,
                                canary_weight_bp=0, actor="bench", reason="", now=now))  # fmt: skip
        flags.publish(start_rollout(flags.current(ROUTE), route=ROUTE, candidate="gpt-4o",
                                    actor="bench", reason="bench", now=now))  # fmt: skip
    offline = GateDecision(
        decision_id="eval-bench", route=ROUTE, gate="accuracy", stage="offline",
        window_start=START, window_end=START, decided_at=START, n=500, value=1.0,
        threshold=0.95, outcome="pass", candidate="gpt-4o", baseline_model="gpt-4",
    )  # fmt: skip
    produce(kafka, settings.topics.decisions, [offline])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="same")
    parser.add_argument("--hours", type=float, default=72.0)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            data_dir=Path(tmp),
            sink={"max_wait_s": 0.05},
            rollout={"lateness_s": 0, "poll_s": 0.02},
        )
        with open_stack(settings) as stack:
            kafka = stack.kafka_config()
            _begin(kafka, settings)
            db = settings.clickhouse.database
            sink = SinkRole(settings, kafka, ClickHouseSink(stack.clickhouse, db))
            gates = GatesRole(settings, kafka, stack.clickhouse)
            threads = [threading.Thread(target=r.run, daemon=True) for r in (sink, gates)]
            for thread in threads:
                thread.start()
            started = time.perf_counter()
            with LiveRouter(kafka, settings.topics.flags) as router:
                router.reader.wait_caught_up(10)
                driver = TrafficDriver(kafka, settings.topics, router, ROUTE, rps=1,
                                       primary=ModelProfile(), candidate=SCENARIOS[args.scenario],
                                       feedback_rate=0.2, judge_rate=0.1)  # fmt: skip
                tick = settings.rollout.tick_s
                replay = Lockstep(driver, lambda: gates, router, start=START, tick_s=tick)
                steps = round(args.hours * 3600 / tick)
                with Progress(console=console) as progress:
                    task = progress.add_task("replaying", total=steps)
                    while replay.steps < steps and not replay.finished():
                        replay.step()
                        flags = router.flags(ROUTE)
                        stage = f"{flags.stage} {flags.canary_weight_bp / 100:g}%" if flags else ""
                        progress.update(
                            task, advance=1, description=f"{replay.now:%a %H:%M} {stage}"
                        )
                final = router.flags(ROUTE)
            wall = time.perf_counter() - started
            time.sleep(1)  # the sink's last batch
            sink.stop()
            gates.stop()
            for thread in threads:
                thread.join(30)
            tables = ("requests", "comparisons", "feedback", "judgements", "gate_decisions")
            rows = {
                t: stack.clickhouse.query(f"SELECT count() FROM {db}.{t} FINAL").result_rows[0][0]  # noqa: S608
                for t in tables
            }
            decisions = latest_decisions(stack.clickhouse, db, ROUTE)
    hours = (replay.now - START).total_seconds() / 3600
    table = Table(title=f"final gate decisions ({args.scenario})")
    columns = ("stage", "gate", "outcome", "margin", "value", "baseline", "threshold", "ci_low",
               "ci_high", "n", "needed_n", "action")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for d in decisions:
        table.add_row(*(f"{d[c]:.4g}" if isinstance(d[c], float) else str(d[c]) for c in columns))
    console.print(table)
    console.print(
        f"outcome: {final.stage if final else '?'} after {hours:.1f} h of event time, "
        f"{wall:.0f} s of wall time (replay {hours * 3600 / wall:,.0f}× real time); "
        f"events produced {dict(driver.counts)}; rows {rows}"
    )


if __name__ == "__main__":
    main()
