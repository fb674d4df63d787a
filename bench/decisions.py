"""Decision quality of the gates: simulated rollouts per scenario and rule, default plan.

Each rollout replays 72 hours of event time (1 request/s, 20 % rated, 10 % judged, unless the
scenario says otherwise) through the real controller and gate statistics
(``processors.gates.montecarlo``), with gates re-checked on every 5-minute tick, for two
rules side by side in one run:

- ``shadowlab``: the anytime-valid, one-sided, paired/matched bounds the live role uses;
- ``point-k5``: the same controller, gates, minimum samples and margins, deciding on the
  metric's point value against the threshold and failing a gate after 5 consecutive
  failing ticks, as Flagger's ``failureLimit`` and Argo Rollouts' analysis do.

Prints a table and the goals of issue 17, each beside the baseline's figure; ``--json OUT``
writes ``{"scenarios": [{"name", "rule", "rollouts", "promoted", "rolled_back",
"rolled_back_within_window", "median_hours", "deciding_gate"}]}`` (fractions in 0-1).

    python bench/decisions.py [--rollouts 200] [--tick-s 300] [--json OUT] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from processors.gates.montecarlo import RolloutOutcome, Rule, simulate_rollouts
from processors.gates.scenarios import SLOW_PEAK_HOUR, Scenario, scenarios
from shadowlab.core.plan import RolloutSettings, route_gates

RULES: tuple[Rule, ...] = ("shadowlab", "point-k5")
AA = ("aa", "aa-diurnal", "aa-low-traffic")
CHUNK = 10


def run_chunk(scenario: Scenario, rule: Rule, tick_s: float, seed: int) -> list[RolloutOutcome]:
    """``CHUNK`` rollouts of one scenario under one rule (one worker's task)."""
    plan = RolloutSettings(tick_s=tick_s)
    return list(
        simulate_rollouts(
            scenario.candidate, rollouts=CHUNK, plan=plan, gates=route_gates(plan),
            primary=scenario.primary, traffic=scenario.traffic, seed=seed, rule=rule,
            shadow_candidate=scenario.shadow_candidate,
        )
    )  # fmt: skip


def summary(scenario: Scenario, rule: Rule, outcomes: Sequence[RolloutOutcome]) -> dict[str, Any]:
    """One row of the JSON output."""
    n = len(outcomes)
    ends = Counter(o.outcome for o in outcomes)
    deciding = Counter(g for o in outcomes if o.outcome == "rolled_back" for g in o.gates)
    return {
        "name": scenario.name,
        "rule": rule,
        "rollouts": n,
        "promoted": ends["promoted"] / n,
        "rolled_back": ends["rolled_back"] / n,
        "rolled_back_within_window": sum(map(scenario.in_window, outcomes)) / n,
        "median_hours": statistics.median(o.hours for o in outcomes),
        "deciding_gate": deciding.most_common(1)[0][0] if deciding else None,
    }


def simulate(
    chosen: Sequence[Scenario], rollouts: int, tick_s: float, workers: int, progress: Progress
) -> dict[tuple[str, Rule], list[RolloutOutcome]]:
    """Every (scenario, rule)'s outcomes, ``rollouts`` each, in ``workers`` processes."""
    results: dict[tuple[str, Rule], list[RolloutOutcome]] = {}
    tasks = {(s.name, r): progress.add_task(f"{s.name} · {r}", total=rollouts)
             for s in chosen for r in RULES}  # fmt: skip
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {
            pool.submit(run_chunk, s, r, tick_s, 1000 + i): (s.name, r)
            for s in chosen for r in RULES for i in range(0, rollouts, CHUNK)
        }  # fmt: skip
        for future in as_completed(futures):
            key = futures[future]
            results.setdefault(key, []).extend(future.result())
            progress.advance(tasks[key], CHUNK)
    return results


def table(rows: Sequence[dict[str, Any]], title: str) -> Table:
    """The rows side by side, one line per scenario and rule."""
    out = Table(title=title)
    for column in ("scenario", "rule", "promoted", "rolled back", "in window", "median h",
                   "deciding gate"):  # fmt: skip
        out.add_column(column)
    for r in rows:
        out.add_row(r["name"], r["rule"], f"{r['promoted']:.1%}", f"{r['rolled_back']:.1%}",
                    f"{r['rolled_back_within_window']:.1%}", f"{r['median_hours']:.1f}",
                    r["deciding_gate"] or "-")  # fmt: skip
    return out


def goals(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str, bool]]:
    """(goal, shadowlab's figure, point-k5's figure, met) for every goal of the issue."""
    by = {(r["name"], r["rule"]): r for r in rows}
    names = {r["name"] for r in rows}
    out = []

    def add(goal: str, name: str, key: str, ok: Any) -> None:
        ours, base = by[(name, "shadowlab")][key], by[(name, "point-k5")][key]
        out.append((goal, f"{ours:.1%}", f"{base:.1%}", bool(ok(ours, base))))

    for name in (n for n in AA if n in names):
        add(f"{name}: rolled back ≤ 5 % and < point-k5", name, "rolled_back",
            lambda o, b: o <= 0.05 and o < b)  # fmt: skip
    for name in (n for n in ("aa", "aa-diurnal") if n in names):
        add(f"{name}: promoted within 72 h ≥ 80 %", name, "promoted", lambda o, b: o >= 0.80)
    for name in sorted(n for n in names if n not in AA and n != "errors-1-1.5"):
        add(f"{name}: rolled back in window ≥ 90 %", name, "rolled_back_within_window",
            lambda o, b: o >= 0.90)  # fmt: skip
    if "errors-1-1.5" in names:
        add("errors-1-1.5: promoted ≤ 5 %", "errors-1-1.5", "promoted", lambda o, b: o <= 0.05)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=200, help="per scenario and rule")
    parser.add_argument("--tick-s", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    args = parser.parse_args()
    args.rollouts = max(CHUNK, args.rollouts // CHUNK * CHUNK)
    console = Console(width=150)
    started = time.perf_counter()
    with Progress(console=console) as progress:
        # The canary's early steps should fall in the slow hours: peak the daily swing 3 h
        # after the median canary start of the A/A run (the steps last 1 + 2 + 3 h).
        first = simulate([scenarios()["aa"]], args.rollouts, args.tick_s, args.workers, progress)
        starts = [o.canary_hours for o in first[("aa", "shadowlab")] if o.canary_hours]
        peak = (statistics.median(starts) + 3) if starts else SLOW_PEAK_HOUR
        every = scenarios(peak)
        wanted = [n for n in args.only.split(",") if n] or list(every)
        chosen = [every[n] for n in wanted if n != "aa"]
        results = first | simulate(chosen, args.rollouts, args.tick_s, args.workers, progress)
    rows = [summary(every[name], rule, results[(name, rule)])
            for name in wanted for rule in RULES]  # fmt: skip
    title = (f"{args.rollouts} rollouts per scenario and rule, tick {args.tick_s:g} s, "
             f"daily swing peaking at hour {peak:.1f}")  # fmt: skip
    console.print(table(rows, title))
    report = Table(title="goals (issue 17), shadowlab beside the point-k5 baseline")
    for column in ("goal", "shadowlab", "point-k5", "met"):
        report.add_column(column)
    for goal, ours, base, met in goals(rows):
        report.add_row(goal, ours, base, "[green]yes[/green]" if met else "[red]no[/red]")
    console.print(report)
    console.print(f"{time.perf_counter() - started:.0f} s on {args.workers} workers")
    if args.json is not None:
        args.json.write_text(json.dumps({"scenarios": rows, "peak_hour": peak}, indent=2) + "\n")


if __name__ == "__main__":
    main()
