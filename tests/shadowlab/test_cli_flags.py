"""``shadowlab flags`` against the session broker, as an operator would type it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from shadowlab.testing import build_config, route_config, write_config


@pytest.fixture
def run(kafka: dict[str, str], tmp_path: Path):  # type: ignore[no-untyped-def]
    topic = f"flags-{uuid.uuid4().hex[:8]}"
    data = build_config(routes=[route_config("gpt-4", name="faq")])
    config = write_config(tmp_path / "shadowlab.yaml", data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    env.update(
        {
            "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
            "SHADOWLAB_TOPICS__FLAGS": topic,
            "COLUMNS": "250",
        }
    )

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shadowlab", "--config", str(config), "flags", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=60,
            check=False,
        )

    return _run


def test_set_rollback_clear_and_history(run) -> None:  # type: ignore[no-untyped-def]
    done = run(
        "set",
        "faq",
        "--primary",
        "gpt-4",
        "--canary",
        "gpt-4o",
        "--weight",
        "5",
        "--reason",
        "start canary",
        "--actor",
        "alice",
    )
    assert done.returncode == 0, done.stderr
    assert "version 1" in done.stdout
    grow = run("set", "faq", "--primary", "gpt-4", "--canary", "gpt-4o", "--weight", "25")
    assert grow.returncode == 0, grow.stderr
    back = run("rollback", "faq", "--reason", "p95 +30%", "--actor", "bob")
    assert back.returncode == 0, back.stderr
    shown = json.loads(run("show", "faq", "--json").stdout)
    assert shown[0]["override"] == "gpt-4"
    assert shown[0]["canary_weight_bp"] == 0
    assert shown[0]["version"] == 3
    assert run("clear-override", "faq", "--reason", "fixed").returncode == 0
    history = json.loads(run("history", "faq", "--json").stdout)
    assert [h["version"] for h in history] == [1, 2, 3, 4]
    assert [h["changed_by"] for h in history][:3] == ["alice", history[1]["changed_by"], "bob"]
    assert history[2]["reason"] == "p95 +30%"
    assert history[1]["salt"] == history[0]["salt"]  # same rollout, same users
    assert "faq" in run("show").stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("set", "billing", "--primary", "gpt-4"), "unknown route 'billing'"),
        (
            ("set", "faq", "--primary", "gpt-4", "--canary", "gpt-4o", "--weight", "150"),
            "canary weight must be a percentage from 0 to 100",
        ),
        (
            ("set", "faq", "--primary", "gpt-4", "--canary", "gpt-4"),
            "canary and primary are the same model",
        ),
        (("rollback", "faq", "--reason", "x"), "has no flags yet"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(run, args, message) -> None:  # type: ignore[no-untyped-def]
    done = run(*args)
    assert done.returncode == 3
    assert message in done.stderr
    assert "Traceback" not in done.stderr
