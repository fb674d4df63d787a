"""``shadowlab eval`` against simulated models whose answers, latencies and tokens are known.

The simulator is deterministic, so the test computes what each model answers with
``shadowlab.testing.model_server.decide`` and checks the reported accuracy, cost and p95
exactly. It compresses time (:data:`TIME_SCALE`) and reports the latency it simulated in a
header (``LATENCY_HEADER``), which the evaluation records instead of its wall clock: the p95
is the profile's, however slow or loaded the machine, and a wall-clock measurement (no
header read) would be off by the compression, 100 times.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.evaluation.golden import GoldenItem, accuracy_gate, is_correct
from shadowlab.testing import (
    UNREACHABLE_URL,
    build_config,
    models_at,
    simulated_models,
    write_config,
)
from shadowlab.testing.model_server import ModelProfile, Simulator, decide

PROFILES = [
    ModelProfile(name="current", latency_median_ms=60, latency_p95_ms=120, p_correct=0.9),
    ModelProfile(name="good", latency_median_ms=80, latency_p95_ms=160, p_correct=0.92),
    ModelProfile(name="worse", latency_median_ms=60, latency_p95_ms=120, p_correct=0.4),
    ModelProfile(name="faithful", latency_median_ms=20, latency_p95_ms=40, p_correct=1,
                 p_faithful=1),
    ModelProfile(name="unfaithful", latency_median_ms=20, latency_p95_ms=40, p_correct=1,
                 p_faithful=0),
    ModelProfile(name="judge", latency_median_ms=5, latency_p95_ms=10, judge=True),
]  # fmt: skip
PRICES = {
    "current": (0.03, 0.06), "good": (0.0025, 0.01), "worse": (0.001, 0.002),
    "faithful": (0.0, 0.0), "unfaithful": (0.0, 0.0), "judge": (0.0, 0.0),
}  # fmt: skip
FACTS = [
    ("How long is the warranty?", "The warranty lasts two years.", "two years"),
    ("How long does shipping take?", "Shipping takes three days.", "three days"),
    ("Which colour is the logo?", "The logo is green.", "green"),
    ("Where is the office?", "The office is in Lisbon.", "Lisbon"),
]


def golden_items(n: int = 80) -> list[GoldenItem]:
    items = []
    for i in range(n):
        question, fact, keyword = FACTS[i % len(FACTS)]
        other = FACTS[(i + 1) % len(FACTS)][1]
        items.append(
            GoldenItem(
                id=f"g{i}",
                question=f"{question} (case {i})",
                keywords=[keyword],
                context=[f"{fact} {other}"],
            )
        )
    return items


def expected(profile: ModelProfile, items: list[GoldenItem]) -> dict[str, Any]:
    """What shadowlab eval must report for ``profile``, from the simulator's own draws."""
    outcomes = []
    for item in items:
        messages = [{"role": "system", "content": d} for d in item.context]
        body = {"messages": [*messages, {"role": "user", "content": item.question}]}
        outcomes.append(decide(profile, 0, body))
    price_in, price_out = PRICES[profile.name]
    cost = sum(o.prompt_tokens * price_in + o.completion_tokens * price_out for o in outcomes)
    latencies = sorted(o.latency_s * 1000 for o in outcomes)
    return {
        "correct": [is_correct(item, o.answer) for item, o in zip(items, outcomes, strict=True)],
        "cost_per_1k_usd": cost / 1000 / len(items) * 1000,
        "p95_ms": latencies[math.ceil(0.95 * len(latencies)) - 1],
    }


#: A simulated second sleeps 10 ms; the simulator reports the simulated latency in a header.
TIME_SCALE = 0.01


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    with simulated_models(PROFILES, time_scale=TIME_SCALE) as sim:
        yield sim


@pytest.fixture
def run(simulator: Simulator, tmp_path: Path):  # type: ignore[no-untyped-def]
    models = [
        {"name": name, "base_url": simulator.base_url, "price_input_per_1k": p_in,
         "price_output_per_1k": p_out}
        for name, (p_in, p_out) in PRICES.items()
    ]  # fmt: skip
    models += models_at(UNREACHABLE_URL, "down", timeout_s=2)
    data = build_config(tmp_path / "data", models=models)
    config = write_config(tmp_path / "shadowlab.yaml", data)
    golden = tmp_path / "golden.jsonl"
    golden.write_text("".join(i.model_dump_json() + "\n" for i in golden_items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        where = ["--config", str(config)]  # eval takes it after the command too
        command = [*args, *where] if args[0] == "eval" else [*where, *args]
        return subprocess.run(
            [sys.executable, "-m", "shadowlab", *command],
            capture_output=True, text=True, env={**env, "COLUMNS": "200"}, cwd=tmp_path,
            timeout=120, check=False,
        )  # fmt: skip

    _run.golden = golden  # type: ignore[attr-defined]
    return _run


def test_reports_accuracy_cost_and_p95_exactly(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "result.json"
    done = run("eval", "--golden", str(run.golden), "--current", "current", "--candidate",
               "good", "--json", str(out), "--route", "faq")  # fmt: skip
    items = golden_items()
    current, good = expected(PROFILES[0], items), expected(PROFILES[1], items)
    gate = accuracy_gate(current["correct"], good["correct"])
    assert done.returncode == {"pass": 0, "fail": 1, "inconclusive": 2}[gate.outcome], done.stderr
    report = json.loads(out.read_text())
    for role, want in (("current", current), ("candidate", good)):
        got = report["models"][role]
        assert got["accuracy"] == sum(want["correct"]) / len(items)
        assert got["cost_per_1k_usd"] == pytest.approx(want["cost_per_1k_usd"], rel=1e-9)
        # the simulated p95, as reported in the header (to its 3 decimals of a millisecond)
        assert got["p95_ms"] == pytest.approx(want["p95_ms"], abs=1e-3)
        assert got["error_rate"] == 0
    assert report["gate"]["outcome"] == gate.outcome
    assert report["gate"]["ratio"] == pytest.approx(sum(good["correct"]) / sum(current["correct"]))
    broken = [i.id for i, a, b in zip(items, current["correct"], good["correct"], strict=True)
              if a and not b]  # fmt: skip
    assert report["flipped"]["broken"] == broken
    assert "current → good" in done.stdout
    stored = run("sql", "SELECT role, accuracy, items FROM golden_runs ORDER BY role",
                 "--format", "json")  # fmt: skip
    rows = json.loads(stored.stdout)
    assert [(r["role"], r["items"]) for r in rows] == [("candidate", 80), ("current", 80)]
    offline = "SELECT outcome, candidate FROM gate_decisions WHERE route = 'faq'"
    decision = run("sql", offline, "--format", "json")
    assert json.loads(decision.stdout) == [{"outcome": gate.outcome, "candidate": "good"}]


def test_the_judge_scores_faithfulness_of_each_model(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "judged.json"
    done = run("eval", "--golden", str(run.golden), "--current", "faithful", "--candidate",
               "unfaithful", "--judge", "judge", "--no-store", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr  # same accuracy: the gate passes
    models = json.loads(out.read_text())["models"]
    # every answer is the context's sentence; the unfaithful one adds a claim found nowhere
    assert (models["current"]["faithfulness"], models["current"]["faithfulness_scored"]) == (
        5.0,
        80,
    )
    assert models["candidate"]["faithfulness"] == 3.0  # 1 of 2 claims supported: 1 + 4 × 0.5
    assert "faithfulness (1-5)" in done.stdout


def test_an_accuracy_drop_fails_the_gate_with_exit_1(run) -> None:  # type: ignore[no-untyped-def]
    done = run("eval", "--golden", str(run.golden), "--current", "current", "--candidate",
               "worse", "--no-store")  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "fail" in done.stdout
    assert "right → wrong" in done.stdout


def test_malformed_lines_are_reported_by_number_and_skipped_unless_strict(run) -> None:  # type: ignore[no-untyped-def]
    lines = run.golden.read_text().splitlines()
    lines[2] = "{not json"
    lines[5] = json.dumps({"id": "x", "question": "q?"})  # no keywords
    run.golden.write_text("\n".join(lines) + "\n")
    done = run("eval", "--golden", str(run.golden), "--current", "current", "--candidate",
               "current", "--no-store")  # fmt: skip
    assert done.returncode == 0, done.stderr  # the same model passes against itself
    assert "golden.jsonl:line 3: not JSON" in done.stderr
    assert "line 6: no keywords" in done.stderr
    assert "evaluating 78 item(s)" in done.stderr
    strict = run("eval", "--golden", str(run.golden), "--current", "current", "--candidate",
                 "current", "--no-store", "--strict")  # fmt: skip
    assert strict.returncode == 3
    assert "malformed line(s)" in strict.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--candidate", "down"), "cannot reach model 'down' at http://127.0.0.1:9/v1"),
        (("--candidate", "nope"), "unknown model 'nope'"),
        (("--candidate", "good", "--matcher", "fuzzy"), "unknown --matcher 'fuzzy'"),
    ],
)
def test_usage_and_endpoint_errors_exit_3_without_a_stack_trace(run, args, message) -> None:  # type: ignore[no-untyped-def]
    done = run("eval", "--golden", str(run.golden), "--current", "current", "--no-store", *args)
    assert done.returncode == 3, done.stdout + done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
