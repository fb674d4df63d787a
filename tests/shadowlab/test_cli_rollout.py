"""``shadowlab rollout …`` and ``shadowlab gates status`` as an operator types them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from schemas import Alert
from shadowlab.core.flags_io import FlagsClient
from shadowlab.testing import read_events


@pytest.fixture
def env(kafka: dict[str, str], tmp_path: Path) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:8]
    values = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    values.update(
        {
            "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
            "SHADOWLAB_TOPICS__FLAGS": f"flags-{suffix}",
            "SHADOWLAB_TOPICS__ALERTS": f"alerts-{suffix}",
            "SHADOWLAB_DATA_DIR": str(tmp_path / "data"),
            "COLUMNS": "250",
        }
    )
    return values


def shadowlab(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadowlab", *args],
        capture_output=True, text=True, env=env, timeout=90, check=False,
    )  # fmt: skip


def test_manual_commands_change_the_flags_and_are_audited(
    env: dict[str, str], kafka: dict[str, str]
) -> None:
    start = ("rollout", "start", "faq", "--candidate", "gpt-4o", "--primary", "gpt-4")
    done = shadowlab(env, *start, "--reason", "cheaper", "--actor", "alice")
    assert done.returncode == 0, done.stderr
    refused = shadowlab(env, "rollout", "promote", "faq", "--reason", "trust me")
    assert refused.returncode == 3
    assert "only a canary can be promoted" in refused.stderr
    assert "Traceback" not in refused.stderr
    for verb in ("pause", "resume", "rollback"):
        done = shadowlab(env, "rollout", verb, "faq", "--reason", f"{verb} it", "--actor", "bob")
        assert done.returncode == 0, done.stderr
    history = json.loads(shadowlab(env, "flags", "history", "faq", "--json").stdout)
    assert [(h["stage"], h["paused"], h["changed_by"]) for h in history] == [
        ("offline", False, "alice"),
        ("offline", True, "bob"),
        ("offline", False, "bob"),
        ("rolled_back", False, "bob"),
    ]
    assert history[-1]["override"] == "gpt-4"
    alerts = read_events(kafka, env["SHADOWLAB_TOPICS__ALERTS"], Alert, count=4)
    assert [a.kind for a in alerts] == ["manual"] * 4
    assert "rolled back by bob: rollback it" in alerts[-1].message
    again = shadowlab(env, "rollout", "pause", "faq", "--reason", "x")
    assert again.returncode == 3
    assert "no rollout to pause" in again.stderr


def test_gates_status_shows_each_gates_latest_decision(env: dict[str, str]) -> None:
    assert shadowlab(env, "db", "migrate").returncode == 0
    insert = (
        "INSERT INTO gate_decisions (decision_id, route, gate, stage, window_start, window_end, "
        "decided_at, n, value, baseline, threshold, ci_low, ci_high, outcome, action, sql, "
        "schema_version) VALUES "
        "('d1', 'faq', 'p95_latency', 'canary', '2026-01-01 00:00:00', '2026-01-01 01:00:00', "
        "'2026-01-01 01:00:00', 900, 1.31, 812.0, 1.1, 1.2, 1.4, 'fail', 'rollback', '', 1), "
        "('d0', 'faq', 'p95_latency', 'canary', '2026-01-01 00:00:00', '2026-01-01 00:55:00', "
        "'2026-01-01 00:55:00', 800, 1.3, 810.0, 1.1, 0.9, 1.5, 'inconclusive', 'hold', '', 1), "
        "('d2', 'faq', 'error_rate', 'canary', '2026-01-01 00:00:00', '2026-01-01 01:00:00', "
        "'2026-01-01 01:00:00', 900, 0.001, 0.01, 0.01, -0.004, 0.006, 'pass', 'none', '', 1)"
    )
    written = shadowlab(env, "sql", "--write", insert)
    assert written.returncode == 0, written.stderr
    status = shadowlab(env, "gates", "status", "faq", "--json")
    assert status.returncode == 0, status.stderr
    rows = {r["gate"]: r for r in json.loads(status.stdout)}
    assert rows["p95_latency"]["outcome"] == "fail"  # the latest, not the earlier hold
    assert (rows["p95_latency"]["ci_low"], rows["p95_latency"]["n"]) == (1.2, 900)
    assert rows["error_rate"]["outcome"] == "pass"
    table = shadowlab(env, "gates", "status", "faq").stdout
    assert "p95_latency" in table
    assert "fail" in table
    missing = shadowlab(env, "gates", "status", "billing")
    assert missing.returncode == 3
    assert "no gate decisions for route 'billing'" in missing.stderr


def test_run_gates_advances_a_rollout_and_stops_cleanly_on_sigterm(
    env: dict[str, str], kafka: dict[str, str]
) -> None:
    env = {**env, "SHADOWLAB_ROLLOUT__TICK_S": "60", "SHADOWLAB_ROLLOUT__POLL_S": "0.1"}
    start = ("rollout", "start", "faq", "--candidate", "gpt-4o", "--primary", "gpt-4")
    assert shadowlab(env, *start, "--reason", "go").returncode == 0
    assert shadowlab(env, "db", "migrate").returncode == 0
    seed = (  # a passing golden-set result, and primary traffic to give the clock a time
        "INSERT INTO gate_decisions (decision_id, route, gate, stage, window_start, window_end, "
        "decided_at, n, threshold, outcome, candidate, schema_version) VALUES ('eval-1', 'faq', "
        "'accuracy', 'offline', '2026-01-01 00:00:00', '2026-01-01 00:00:00', "
        "'2026-01-01 00:00:00', 100, 0.95, 'pass', 'gpt-4o', 1)",
        "INSERT INTO requests (request_id, event_time, route, model, arm, status) VALUES "
        "('r1', '2026-01-01 00:10:00', 'faq', 'gpt-4', 'primary', 'ok')",
    )
    for statement in seed:
        assert shadowlab(env, "sql", "--write", statement).returncode == 0
    with subprocess.Popen(
        [sys.executable, "-m", "shadowlab", "run", "gates"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as gates:  # fmt: skip
        with FlagsClient(kafka, env["SHADOWLAB_TOPICS__FLAGS"]) as flags:
            deadline = time.monotonic() + 60
            while (current := flags.current("faq")) is None or current.stage != "shadow":
                assert time.monotonic() < deadline, "the controller did not start the shadow"
                time.sleep(0.05)
            moved = flags.current("faq")
        gates.send_signal(signal.SIGTERM)
        out, err = gates.communicate(timeout=60)
    assert gates.returncode == 0, err
    assert "gates role" in out
    assert moved is not None
    assert moved.changed_by == "shadowlab-gates"
    assert moved.stage_since is not None
