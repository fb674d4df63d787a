"""The command line, run as a user would (subprocesses: chDB allows one engine per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sinks.migrations import MIGRATIONS


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    return subprocess.run(
        [sys.executable, "-m", "shadowlab", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**base, "COLUMNS": "200", **env},
        timeout=120,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    done = _run(["--help"], tmp_path)
    assert done.returncode == 0
    for command in ("broker", "smoke", "init", "schemas", "db", "version", "up"):
        assert command in done.stdout


def test_db_migrate_twice_is_a_no_op(tmp_path: Path) -> None:
    first = _run(["db", "migrate"], tmp_path, SHADOWLAB_DATA_DIR=str(tmp_path / "d"))
    assert first.returncode == 0, first.stderr
    assert f"applied migrations {[m.version for m in MIGRATIONS]}" in first.stdout
    second = _run(["db", "migrate"], tmp_path, SHADOWLAB_DATA_DIR=str(tmp_path / "d"))
    assert second.returncode == 0, second.stderr
    assert "is up to date" in second.stdout


def test_bad_setting_exits_3_with_a_clear_message(tmp_path: Path) -> None:
    done = _run(["db", "migrate"], tmp_path, SHADOWLAB_TOPICS__PARTITIONS="zero")
    assert done.returncode == 3
    assert "SHADOWLAB_TOPICS__PARTITIONS" in done.stderr
    assert "Traceback" not in done.stderr


def test_unreachable_clickhouse_names_the_host_not_the_password(tmp_path: Path) -> None:
    done = _run(
        ["db", "migrate"],
        tmp_path,
        SHADOWLAB_CLICKHOUSE__DSN="http://app:pw-s3cret@127.0.0.1:1/db",
    )
    assert done.returncode == 3
    assert "127.0.0.1:1" in done.stderr
    assert "pw-s3cret" not in done.stderr + done.stdout


def test_init_creates_topics_on_a_configured_broker(tmp_path: Path, kafka: dict[str, str]) -> None:
    env = {
        "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
        "SHADOWLAB_TOPICS__REQUESTS": "init-test.requests",
        "SHADOWLAB_DATA_DIR": str(tmp_path / "d"),
    }
    first = _run(["init"], tmp_path, **env)
    assert first.returncode == 0, first.stderr
    assert "init-test.requests" in first.stdout
    second = _run(["init"], tmp_path, **env)
    assert "none (all exist)" in second.stdout


def test_simulate_serves_the_configured_models(tmp_path: Path) -> None:
    import json
    import urllib.request

    from shadowlab.embedded.broker import free_port
    from shadowlab.testing import wait_for_http

    config = tmp_path / "models.yaml"
    config.write_text("models:\n  - {name: gpt-4}\n  - {name: gpt-4o}\n")
    port = free_port()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "shadowlab",
            "simulate",
            "--config",
            str(config),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        try:
            wait_for_http(f"http://127.0.0.1:{port}/v1/models")
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}/v1/models", timeout=5
            ) as response:
                models = json.load(response)
        finally:
            server.terminate()
    assert [m["id"] for m in models["data"]] == ["gpt-4", "gpt-4o"]


def test_simulate_with_a_bad_config_says_which_file(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("models:\n  - {latency_median_ms: -1}\n")
    done = _run(["simulate", "--config", str(tmp_path / "bad.yaml")], tmp_path)
    assert done.returncode == 3
    assert "bad.yaml is invalid" in done.stderr


def test_run_sink_stores_events_from_a_configured_broker(
    tmp_path: Path, kafka: dict[str, str]
) -> None:
    import signal
    import uuid

    from processors.catchup import committed_offsets
    from shadowlab.core.kafka import ensure_topics
    from shadowlab.testing import produce, sample_request, wait_until

    requests, group = f"req-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    env.update(
        {
            "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
            "SHADOWLAB_TOPICS__REQUESTS": requests,
            "SHADOWLAB_DATA_DIR": str(tmp_path / "data"),
            "SHADOWLAB_SINK__MAX_WAIT_S": "0.2",
            "SHADOWLAB_SINK__GROUP_ID": group,
            "COLUMNS": "200",
        }
    )
    ensure_topics(kafka, {requests: 2})
    produce(kafka, requests, [sample_request(request_id=f"s{i}") for i in range(25)])
    with subprocess.Popen(
        [sys.executable, "-m", "shadowlab", "run", "sink"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as sink:

        def stored_or_exited() -> bool:
            # the sink commits a batch's offsets only once it is stored: 25 committed = stored
            committed = committed_offsets(kafka, group, [(requests, 0), (requests, 1)])
            return sum(committed.values()) >= 25 or sink.poll() is not None

        try:
            wait_until(stored_or_exited, 180, poll_s=0.5)
            assert sink.poll() is None, "the sink exited before storing the events"
        finally:
            sink.send_signal(signal.SIGINT)
            out, _ = sink.communicate(timeout=60)
    assert f"'{requests}': 25" in out, out


def test_sql_is_read_only_unless_asked_and_formats_json_and_csv(tmp_path: Path) -> None:
    import json

    data = {"SHADOWLAB_DATA_DIR": str(tmp_path / "d")}
    assert _run(["db", "migrate"], tmp_path, **data).returncode == 0
    insert = (
        "INSERT INTO feedback (feedback_id, request_id, event_time, route, csat, "
        "schema_version) VALUES ('f1', 'r1', now64(6), 'faq', 4, 1)"
    )
    refused = _run(["sql", insert], tmp_path, **data)
    assert refused.returncode == 3
    assert "readonly" in refused.stderr
    assert _run(["sql", insert, "--write"], tmp_path, **data).returncode == 0
    query = "SELECT route, csat FROM feedback FINAL"
    as_json = _run(["sql", query, "--format", "json"], tmp_path, **data)
    assert json.loads(as_json.stdout) == [{"route": "faq", "csat": 4}]
    as_csv = _run(["sql", query, "--format", "csv"], tmp_path, **data)
    assert as_csv.stdout.splitlines() == ["route,csat", "faq,4"]
    bad = _run(["sql", "SELEC 1"], tmp_path, **data)
    assert bad.returncode == 3
    assert "query failed" in bad.stderr


def test_run_join_emits_comparisons_and_stops_cleanly_on_sigterm(
    tmp_path: Path, kafka: dict[str, str], topic_factory: Any
) -> None:
    import signal

    from schemas import Comparison
    from shadowlab.testing import (
        build_config,
        models_at,
        produce,
        read_events,
        route_config,
        sample_request,
        sample_shadow,
        write_config,
    )

    requests, shadow, comparisons = (topic_factory(p, 4) for p in ("req", "shadow", "cmp"))
    config = write_config(
        tmp_path / "shadowlab.yaml",
        build_config(
            tmp_path / "data",
            kafka=kafka,
            topics={
                "requests": requests,
                "shadow": shadow,
                "comparisons": comparisons,
                "flags": topic_factory("flags", 1),
            },
            models=models_at("http://sim", "gpt-4", "gpt-4o"),
            routes=[route_config("gpt-4", "gpt-4o")],
            join={"group_id": f"join-{tmp_path.name}"},
        ),
    )
    events = [sample_request(request_id=f"cli-{i}") for i in range(10)]
    produce(kafka, requests, events, "request_id")
    produce(kafka, shadow, [sample_shadow(request_id=e.request_id) for e in events], "request_id")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    with subprocess.Popen(
        [sys.executable, "-m", "shadowlab", "--config", str(config), "run", "join"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as join:
        joined = read_events(kafka, comparisons, Comparison, count=10, timeout_s=60)
        join.send_signal(signal.SIGTERM)
        out, err = join.communicate(timeout=60)
    assert {c.request_id for c in joined} == {e.request_id for e in events}
    assert join.returncode == 0, err
    assert "join role" in out
