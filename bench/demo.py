"""Every built-in demo scenario, end to end: verdict, deciding gate, event and wall time.

    python bench/demo.py [--scenarios good,error-spike] [--seed S]

Each scenario runs ``shadowlab demo --scenario NAME --json`` in its own process (the real
stack: embedded Kafka, chDB, simulator, every role) one after the other, and the table shows
whether the verdict is the expected one, which gate decided, how much event time the
rollout covered, the wall time, and the replay speed (event time over wall time: the
baseline is real time, 1×). Every run must reconcile its counts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shadowlab.scenario import builtin_scenarios, load_scenario


def _deciding_gate(result: dict[str, Any]) -> str:
    """The gates of the last move: the failed ones of a rollback, else every gate passed."""
    decisions = result["decisions"]
    if not decisions:
        return "-"
    last = decisions[-1]["window_end"]
    final = [d for d in decisions if d["window_end"] == last]
    failed = list(
        dict.fromkeys(f"{d['stage']}.{d['gate']}" for d in final if d["outcome"] == "fail")
    )
    return ", ".join(failed) or f"all {final[0]['stage']} gates passed"


def _run(name: str, seed: int | None, workdir: Path) -> tuple[dict[str, Any], float]:
    out = workdir / f"{name}.json"
    command = [sys.executable, "-m", "shadowlab", "demo", "--scenario", name, "--json", str(out)]
    if seed is not None:
        command += ["--seed", str(seed)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=workdir)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(out.read_text()), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(builtin_scenarios()))
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    names = args.scenarios.split(",")
    console = Console()
    table = Table(title="shadowlab demo: every scenario (2 cores)")
    for column in ("scenario", "expected", "outcome", "decided by", "event h", "wall s",
                   "speed-up", "requests", "reconciled"):  # fmt: skip
        table.add_column(column, justify="right" if column in ("event h", "wall s") else "left")
    with tempfile.TemporaryDirectory() as tmp, Progress(console=console) as progress:
        task = progress.add_task("scenarios", total=len(names))
        for name in names:
            progress.update(task, description=name)
            result, wall = _run(name, args.seed, Path(tmp))
            expected = load_scenario(name).expect
            ok = "[green]" if result["outcome"] == expected else "[red]"
            hours = result["event_hours"]
            table.add_row(
                name, expected, f"{ok}{result['outcome']}", _deciding_gate(result),
                f"{hours:.0f}", f"{wall:.0f}", f"{hours * 3600 / wall:,.0f}×",
                f"{result['counts']['requests']:,}", str(result["reconciled"]),
            )  # fmt: skip
            progress.advance(task)
    console.print(table)


if __name__ == "__main__":
    main()
