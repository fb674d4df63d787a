"""``shadowlab demo`` end to end, each run its own process (chDB: one engine path per process).

The default scenario runs the whole loop (offline gate, shadow, canary steps, promotion) and
writes the report; two scenarios check a verdict against the good one: a rejection by the
offline gate and a rollback by the shadow error-rate gate. ``python bench/demo.py`` runs every
built-in scenario and prints the matrix (README: the demo).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shadowlab.scenario import load_scenario


def _demo(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "-m", "shadowlab", "demo", "--json", str(out), *args],
        check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "160"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _reconciled(result: dict[str, Any]) -> None:
    counts = result["counts"]
    assert result["reconciled"] is True
    for key in ("requests", "shadow_results", "comparisons", "judgements", "feedback"):
        row = counts["reconcile"][key]
        assert row["produced"] == row["stored"] == row["distinct"] == counts[key], key
    tables = counts["tables"]
    assert tables["requests"] == counts["requests"]
    assert tables["golden_runs"] == 2  # one row per model of the offline evaluation


def test_the_default_scenario_promotes_reconciles_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    result, stdout = _demo(tmp_path, "--report", str(report))
    scenario = load_scenario("good")
    assert result["scenario"] == "good"
    assert result["outcome"] == "promoted"
    flags = result["final_flags"]
    assert flags["primary"] == scenario.candidate.name
    assert (flags["canary"], flags["canary_weight_bp"], flags["override"]) == (None, 0, None)
    assert result["event_hours"] >= 72  # traffic spread over at least three days
    _reconciled(result)
    counts = result["counts"]
    assert counts["comparisons"] >= counts["shadow_results"] > counts["requests"] / 2
    assert counts["judgements"] > 0
    assert counts["feedback"] > counts["requests"] / 4
    # every canary gate passed at the end, over its full window, with its interval
    canary = {g["name"]: g for g in result["gates"] if g["stage"] == "canary"}
    assert set(canary) == {"p95_latency", "error_rate", "faithfulness", "csat"}
    for gate in canary.values():
        assert gate["outcome"] == "pass"
        assert gate["ci_low"] is not None
        assert gate["ci_high"] is not None
        assert gate["n"] >= 50
    # the moves, in order: offline pass, into shadow, each canary step, the promotion
    assert result["decisions"][0]["stage"] == "offline"
    assert result["decisions"][0]["outcome"] == "pass"
    assert counts["requests_by_arm"]["canary"] > 0
    actions = [d["action"] for d in result["decisions"]]
    assert actions[-1] == "promote"
    assert actions.count("advance") >= 4  # offline→shadow, shadow→10 %, 10→30, 30→50
    ends = [d["window_end"] for d in result["decisions"]]
    assert ends == sorted(ends)
    html = report.read_text()
    assert "promoted" in html
    assert "<svg" in html
    assert "outcome: promoted" in stdout


@pytest.mark.parametrize(
    ("name", "outcome", "stage", "gate"),
    [
        ("accuracy-drop", "rejected", "offline", "accuracy"),
        ("error-spike", "rolled_back", "shadow", "error_rate"),
    ],
)
def test_a_bad_candidate_is_stopped_by_its_gate(
    tmp_path: Path, name: str, outcome: str, stage: str, gate: str
) -> None:
    result, _ = _demo(tmp_path, "--scenario", name)
    assert result["outcome"] == outcome
    flags = result["final_flags"]
    assert flags["primary"] == load_scenario(name).primary.name
    assert flags["override"] == flags["primary"]
    assert flags["canary_weight_bp"] == 0
    rollback = [d for d in result["decisions"] if d["action"] == "rollback"]
    assert rollback
    failed = {(d["stage"], d["gate"]) for d in rollback if d["outcome"] == "fail"}
    assert (stage, gate) in failed
    if outcome == "rejected":  # no user ever saw the candidate
        assert result["offline"]["outcome"] == "fail"
        assert result["counts"]["requests_by_arm"].get("canary", 0) == 0
        assert result["counts"]["shadow_results"] == 0
    _reconciled(result)
