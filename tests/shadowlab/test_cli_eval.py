"""``shadowlab eval`` against simulated models whose answers, latencies and tokens are known.

The simulator is deterministic, so the test computes what each model answers with
``shadowlab.testing.model_server.decide`` and checks the reported accuracy, cost and p95
exactly. It compresses time (:data:`TIME_SCALE`) and reports the latency it simulated in a
header (``LATENCY_HEADER``), which the evaluation records instead of its wall clock: the p95
is the profile's, however slow or loaded the machine, and a wall-clock measurement (no
header read) would be off by the compression, 100 times.

The repeated-test rule (a golden set decides a route's candidate once, unless a re-run is on
the record) is checked through the command too, on its own chDB.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.evaluation.golden import (
    GateResult,
    GoldenItem,
    ModelSummary,
    accuracy_gate,
    is_correct,
)
from processors.evaluation.reruns import EarlierRun, Rerun
from processors.evaluation.store import EvalRun
from schemas import Alert, GateDecision
from shadowlab.offline_eval import publish_offline
from shadowlab.testing import (
    UNREACHABLE_URL,
    build_config,
    make_settings,
    models_at,
    read_events,
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


# -- the repeated-test rule: one golden set decides a route's candidate once ------------------


def _one_line(text: str) -> str:
    """``text`` with rich's wrapping undone."""
    return " ".join(text.split())


def _decisions(run) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    done = run("sql", "SELECT decision_id, candidate, outcome, sql FROM gate_decisions FINAL "
               "WHERE route = 'faq' ORDER BY decided_at", "--format", "json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _small_golden(path: Path, items: list[GoldenItem]) -> Path:
    path.write_text("".join(i.model_dump_json() + "\n" for i in items))
    return path


def test_a_golden_set_decides_a_routes_candidate_once(run, simulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    items = golden_items(20)
    golden = _small_golden(tmp_path / "set1.jsonl", items)
    args = ("--current", "current", "--candidate", "good", "--route", "faq")
    first = run("eval", "--golden", str(golden), *args)
    assert first.returncode in (0, 1, 2), first.stderr
    (decision,) = _decisions(run)
    assert decision["candidate"] == "good"

    # the same items, reordered and reformatted: the same golden set, refused before any call
    same = tmp_path / "set1-again.jsonl"
    same.write_text("\n".join(json.dumps(i.model_dump(), indent=None) for i in items[::-1]))
    served = simulator.requests_served
    again = run("eval", "--golden", str(same), *args)
    assert again.returncode == 3, again.stdout + again.stderr
    message = _one_line(again.stderr)
    assert "already decided the offline gate of route 'faq', candidate 'good'" in message
    assert f"{decision['decision_id']} decided " in message
    assert f"UTC: {decision['outcome']}" in message
    assert "new golden set" in message
    assert '--rerun-reason "WHY"' in message
    assert "Traceback" not in again.stderr
    assert simulator.requests_served == served  # nothing spent on a refused run
    assert len(_decisions(run)) == 1

    # a different set (one item fewer) is a first run; so is another candidate on the same set
    other = run("eval", "--golden", str(_small_golden(tmp_path / "set2.jsonl", items[1:])), *args)
    assert other.returncode in (0, 1, 2), other.stderr
    worse = run("eval", "--golden", str(golden), "--current", "current", "--candidate", "worse",
                "--route", "faq")  # fmt: skip
    assert worse.returncode in (0, 1, 2), worse.stderr
    decisions = _decisions(run)
    assert [d["candidate"] for d in decisions] == ["good", "good", "worse"]
    assert not any("re-run" in d["sql"] for d in decisions)


def test_a_rerun_with_a_reason_is_published_on_the_record(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    golden = _small_golden(tmp_path / "set.jsonl", golden_items(20))
    args = ("--golden", str(golden), "--current", "current", "--candidate", "good",
            "--route", "faq")  # fmt: skip
    first = run("eval", *args, "--rerun-reason", "not needed yet")
    assert first.returncode in (0, 1, 2), first.stderr
    assert "--rerun-reason is not recorded" in _one_line(first.stderr)
    rerun = run("eval", *args, "--rerun-reason", "judge prompt fixed", "--actor", "alice")
    assert rerun.returncode in (0, 1, 2), rerun.stderr
    assert "recorded as a re-run on this golden set (1 earlier run(s)) by alice" in _one_line(
        rerun.stderr
    )
    earlier, latest = _decisions(run)
    assert "re-run" not in earlier["sql"]
    assert "not needed yet" not in earlier["sql"]
    assert (
        f"re-run: 1 earlier run(s) on this golden set, newest {earlier['decision_id']} decided "
        in latest["sql"]
    )
    assert latest["sql"].endswith("; by alice; reason: judge prompt fixed")
    alerts = run("sql", "SELECT kind, severity, decision_id, message FROM alerts FINAL "
                 "WHERE route = 'faq'", "--format", "json")  # fmt: skip
    (alert,) = json.loads(alerts.stdout)
    assert (alert["kind"], alert["severity"]) == ("manual", "warning")
    assert alert["decision_id"] == latest["decision_id"]
    assert alert["message"].endswith("for good: " + latest["outcome"] + ", by alice: judge "
                                     "prompt fixed")  # fmt: skip
    # a re-run counts: the third run on the set is refused, naming the newest decision
    third = run("eval", *args)
    assert third.returncode == 3, third.stdout + third.stderr
    message = _one_line(third.stderr)
    assert f"{latest['decision_id']} decided " in message
    assert "(2 decisions on it so far)" in message


def test_without_clickhouse_a_route_run_stops_before_any_model_call(  # type: ignore[no-untyped-def]
    simulator, tmp_path: Path
) -> None:
    models = [{"name": n, "base_url": simulator.base_url} for n in ("current", "good")]
    data = build_config(tmp_path / "data", models=models,
                        clickhouse={"dsn": UNREACHABLE_URL.removesuffix("/v1")})  # fmt: skip
    config = write_config(tmp_path / "shadowlab.yaml", data)
    golden = _small_golden(tmp_path / "set.jsonl", golden_items(5))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    served = simulator.requests_served
    done = subprocess.run(
        [sys.executable, "-m", "shadowlab", "eval", "--golden", str(golden), "--current",
         "current", "--candidate", "good", "--route", "faq", "--config", str(config)],
        capture_output=True, text=True, env={**env, "COLUMNS": "200"}, cwd=tmp_path,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stdout + done.stderr
    assert "cannot connect to ClickHouse" in done.stderr
    assert simulator.requests_served == served


def test_a_rerun_is_published_with_its_alert_on_kafka(  # type: ignore[no-untyped-def]
    kafka, topic_factory, clickhouse, ch_db, tmp_path: Path
) -> None:
    decisions, alerts = topic_factory("decisions"), topic_factory("alerts")
    settings = make_settings(tmp_path, kafka=kafka, clickhouse={"database": ch_db},
                             topics={"decisions": decisions, "alerts": alerts})  # fmt: skip
    at = dt.datetime(2025, 3, 1, 9, 30, tzinfo=dt.UTC)
    summary = ModelSummary("good", 20, 0.9, None, 0, 80.0, 160.0, 0.0, 0.1)
    run = EvalRun(
        run_id="20250301T093000-abcd0123", started_at=at, finished_at=at,
        golden_file="set.jsonl", golden_sha256="0" * 64, golden_digest="ab" * 32,
        matcher="keyword", route="faq",
        summaries={"current": dataclasses.replace(summary, model="current"), "candidate": summary},
        results={"current": [], "candidate": []},
        gate=GateResult("pass", 1.0, 0.97, 1.03, 0.95, 2000),
    )  # fmt: skip
    earlier = EarlierRun("eval-20250228T093000-00000000", at - dt.timedelta(days=1), "fail", 0.9)
    publish_offline(settings, clickhouse, run, "faq",
                    rerun=Rerun("judge prompt fixed", "alice", 1, earlier))  # fmt: skip
    (decision,) = read_events(kafka, decisions, GateDecision, count=1)
    (alert,) = read_events(kafka, alerts, Alert, count=1)
    assert decision.decision_id == "eval-20250301T093000-abcd0123"
    assert f"golden-set sha256:{'ab' * 32} (20 items)" in decision.sql
    assert decision.sql.endswith("; by alice; reason: judge prompt fixed")
    assert (alert.kind, alert.decision_id) == ("manual", decision.decision_id)
    stored = clickhouse.query(f"SELECT alert_id FROM {ch_db}.alerts FINAL").result_rows
    assert stored == [(alert.alert_id,)]
