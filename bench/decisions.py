"""Decision quality of the gates: 200 simulated rollouts per scenario, default plan.

Each rollout replays 72 hours of event time at 1 request per second through the real
controller and gate statistics (``processors.gates.montecarlo``), with gates re-checked on
every 5-minute tick. Prints, per scenario, how rollouts ended, when, and which gate decided;
and the goals of issue 6: A/A false-fail rate ≤ 5 % and ≥ 80 % promoted within 72 h; a 30 %
slower candidate rolled back before its 24 h canary window ends in ≥ 90 %.

Baseline, in the same run: the same controller, gates, minimum samples and margins, but
deciding on the metric's current value against the threshold, as the analysis steps of Argo
Rollouts and Flagger do, re-checked on every tick: its A/A false-fail rate is what the
intervals prevent.

    python bench/decisions.py [--rollouts 200] [--tick-s 300]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from processors.gates import evaluate
from processors.gates.montecarlo import ModelProfile, RolloutOutcome, simulate_rollouts, slower
from processors.gates.stats import Interval
from shadowlab.core.plan import RolloutSettings, route_gates

SAME = ModelProfile()
SCENARIOS: dict[str, tuple[ModelProfile, ModelProfile | None]] = {
    "A/A (identical candidate)": (SAME, None),
    "p95 30% worse": (slower(SAME, 1.3), None),
    "p95 30% worse, live traffic only": (slower(SAME, 1.3), SAME),
    "error rate 1% → 3%, live only": (replace(SAME, error_rate=0.03), SAME),
    "CSAT 3.75 → 3.35, live only": (replace(SAME, csat=(0.1, 0.15, 0.25, 0.3, 0.2)), SAME),
    "faithfulness 4.5 → 3.6, live only": (replace(SAME, faithfulness_mean=3.6), SAME),
}


def point_mean(n: int, total: float, total_sq: float, alpha: float, *,
               value_range: tuple[float, float], t_star: float = 0) -> Interval:  # fmt: skip
    return Interval(total / n, total / n) if n else Interval(*value_range)


def point_rate(n: int, k: int, alpha: float, *, t_star: float = 0) -> Interval:
    return Interval(k / n, k / n) if n else Interval(0.0, 1.0)


def point_ranks(n: int, q: float, alpha: float, *, t_star: float = 0) -> tuple[int, int]:
    rank = max(1, math.ceil(q * n))
    return rank, rank


@contextmanager
def point_estimates() -> Iterator[None]:
    """The baseline: the metric's current value against the threshold, no interval."""
    saved = (evaluate.mean_cs, evaluate.proportion_cs, evaluate.quantile_rank_bounds)
    evaluate.mean_cs, evaluate.proportion_cs, evaluate.quantile_rank_bounds = (  # type: ignore[assignment]
        point_mean, point_rate, point_ranks,
    )  # fmt: skip
    try:
        yield
    finally:
        evaluate.mean_cs, evaluate.proportion_cs, evaluate.quantile_rank_bounds = saved


def in_time(o: RolloutOutcome) -> bool:
    """Rolled back before the canary's 24 h window ended (or before the canary began)."""
    return o.outcome == "rolled_back" and (o.canary_hours is None or o.hours < o.canary_hours + 24)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--tick-s", type=float, default=300.0)
    args = parser.parse_args()
    plan = RolloutSettings(tick_s=args.tick_s)
    gates = route_gates(plan)
    table = Table(title=f"{args.rollouts} rollouts per scenario, 1 rps, tick {args.tick_s:g} s")
    for column in ("scenario", "promoted", "rolled back", "in time", "held", "median h",
                   "deciding gate"):  # fmt: skip
        table.add_column(column)
    results: dict[str, list[RolloutOutcome]] = {}
    started = time.perf_counter()
    with Progress() as progress:
        for name, (candidate, shadow) in SCENARIOS.items():
            task = progress.add_task(name, total=args.rollouts)
            outcomes = []
            runs = simulate_rollouts(candidate, rollouts=args.rollouts, plan=plan, gates=gates,
                                     seed=1000, shadow_candidate=shadow)  # fmt: skip
            for outcome in runs:
                outcomes.append(outcome)
                progress.advance(task)
            results[name] = outcomes
    for name, outcomes in results.items():
        ends = Counter(o.outcome for o in outcomes)
        deciding = Counter(g for o in outcomes for g in o.gates if o.outcome == "rolled_back")
        table.add_row(
            name,
            f"{ends['promoted'] / len(outcomes):.1%}",
            f"{ends['rolled_back'] / len(outcomes):.1%}",
            f"{sum(map(in_time, outcomes)) / len(outcomes):.1%}",
            f"{ends['held'] / len(outcomes):.1%}",
            f"{statistics.median(o.hours for o in outcomes):.1f}",
            ", ".join(f"{g} ×{c}" for g, c in deciding.most_common(2)) or "-",
        )
    console = Console()
    console.print(table)
    with point_estimates():
        naive = list(simulate_rollouts(SAME, rollouts=args.rollouts, plan=plan, gates=gates,
                                       seed=1000))  # fmt: skip
    naive_fail = sum(o.outcome == "rolled_back" for o in naive) / len(naive)
    aa = results["A/A (identical candidate)"]
    slow = results["p95 30% worse"]
    false_fail = sum(o.outcome == "rolled_back" for o in aa) / len(aa)
    promoted = sum(o.outcome == "promoted" and o.hours <= 72 for o in aa) / len(aa)
    caught = sum(map(in_time, slow)) / len(slow)
    console.print(
        f"A/A false-fail rate {false_fail:.1%} (goal ≤ 5%), promoted within 72 h {promoted:.1%} "
        f"(goal ≥ 80%); 30%-slower rolled back in time {caught:.1%} (goal ≥ 90%); "
        f"{time.perf_counter() - started:.0f} s"
    )
    console.print(
        f"baseline, point values against the thresholds every tick: A/A false-fail rate "
        f"{naive_fail:.1%}, by "
        f"{Counter(g for o in naive if o.outcome == 'rolled_back' for g in o.gates).most_common(3)}"
    )


if __name__ == "__main__":
    main()
