"""``shadowlab demo`` end to end, each run its own process (chDB: one engine path per process).

The default scenario runs the whole loop (offline gate, shadow, canary steps, promotion) and
writes the report; two shorter ones check the verdicts against it: a rejection by the offline
gate, and a user's scenario file whose provider starts failing, rolled back by the shadow
error-rate gate. ``python bench/demo.py`` runs every built-in scenario and prints the matrix
(README: the demo); CI would take too long for all six.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shadowlab.scenario import load_scenario

#: Generous bounds (seconds) on one demo run, each test's pytest timeout a minute above its
#: run's so that the demo's own output is what a run over it reports: on a loaded 2-core CI
#: machine a run takes several times what it takes on an idle one, which is fine. Inside the
#: demo every wait is on a condition (the pipeline drained, the controller decided a tick).
DEFAULT_RUN_S = 1500
SHORT_RUN_S = 840


def _demo(tmp_path: Path, *args: str, timeout_s: float) -> tuple[dict[str, Any], str]:
    out = tmp_path / "result.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "shadowlab", "demo", "--json", str(out), *args],
            check=False, capture_output=True, text=True, timeout=timeout_s, cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "COLUMNS": "160"},
        )  # fmt: skip
    except subprocess.TimeoutExpired as late:
        shown = [_text(late.stdout)[-3000:], _text(late.stderr)[-3000:]]
        pytest.fail(f"the demo did not finish in {timeout_s:g} s:\n" + "\n".join(shown))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def _reconciled(result: dict[str, Any]) -> None:
    counts = result["counts"]
    assert result["reconciled"] is True
    for key in ("requests", "shadow_results", "comparisons", "judgements", "feedback"):
        row = counts["reconcile"][key]
        assert row["produced"] == row["stored"] == row["distinct"] == counts[key], key
    tables = counts["tables"]
    assert tables["requests"] == counts["requests"]
    assert tables["golden_runs"] == 2  # one row per model of the offline evaluation


@pytest.mark.timeout(DEFAULT_RUN_S + 60)
def test_the_default_scenario_promotes_reconciles_and_reports(tmp_path: Path) -> None:
    report = tmp_path / "demo.html"
    result, stdout = _demo(tmp_path, "--report", str(report), timeout_s=DEFAULT_RUN_S)
    scenario = load_scenario("good")
    assert result["scenario"] == "good"
    assert result["outcome"] == "promoted"
    flags = result["final_flags"]
    assert flags["primary"] == scenario.candidate.name
    assert (flags["canary"], flags["canary_weight_bp"], flags["override"]) == (None, 0, None)
    assert result["event_hours"] >= 72  # traffic spread over at least three days
    _reconciled(result)
    counts = result["counts"]
    # every result is compared, except those the join read after the stage had moved on
    # (to promoted: it expected no candidate) or whose request never came, each counted
    outcomes = counts["join_outcomes"]
    unpaired = outcomes.get("unexpected", 0) + outcomes.get("orphan", 0)
    assert counts["comparisons"] + unpaired >= counts["shadow_results"] > counts["requests"] / 2
    assert unpaired <= counts["shadow_results"] / 100
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


def _stopped_by(result: dict[str, Any], stage: str, gate: str, primary: str) -> None:
    flags = result["final_flags"]
    assert flags["primary"] == primary
    assert flags["override"] == primary
    assert flags["canary_weight_bp"] == 0
    rollback = [d for d in result["decisions"] if d["action"] == "rollback"]
    assert (stage, gate) in {(d["stage"], d["gate"]) for d in rollback if d["outcome"] == "fail"}
    _reconciled(result)


@pytest.mark.timeout(SHORT_RUN_S + 60)
def test_a_candidate_worse_on_the_golden_set_is_rejected_before_any_user_sees_it(
    tmp_path: Path,
) -> None:
    result, _ = _demo(tmp_path, "--scenario", "accuracy-drop", timeout_s=SHORT_RUN_S)
    assert result["outcome"] == "rejected"
    assert result["offline"]["outcome"] == "fail"
    assert result["counts"]["requests_by_arm"].get("canary", 0) == 0
    assert result["counts"]["shadow_results"] == 0
    _stopped_by(result, "offline", "accuracy", "gpt-4")


@pytest.mark.timeout(SHORT_RUN_S + 60)
def test_a_scenario_file_with_drift_is_rolled_back_by_the_shadow_error_gate(
    tmp_path: Path,
) -> None:
    """A user's scenario (only what differs from good.yaml): errors jump two hours in."""
    scenario = tmp_path / "provider-outage.yaml"
    scenario.write_text(
        "name: provider-outage\n"
        "expect: rolled_back\n"
        "traffic: {requests_per_hour: 200, diurnal_amplitude: 0}\n"
        "gates: {shadow.error_rate: {min_n: 100}}\n"
        "candidate: {name: gpt-4o-mini, latency_median_ms: 500, latency_p95_ms: 1000,\n"
        "  error_rate: 0.01, changes: [{at: '2026-06-01T02:00:00Z', set: {error_rate: 0.2}}]}\n"
    )
    result, stdout = _demo(
        tmp_path, "--scenario", str(scenario), "--seed", "3", timeout_s=SHORT_RUN_S
    )
    assert result["scenario"] == "provider-outage"
    assert result["offline"]["outcome"] == "pass"  # asked as of the start: before the drift
    assert result["outcome"] == "rolled_back"
    assert result["event_hours"] < 24
    _stopped_by(result, "shadow", "error_rate", "gpt-4")
    assert "outcome: rolled_back" in stdout
