"""``shadowlab up`` as an operator runs it: a subprocess (chDB allows one engine per process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from shadowlab.cli_up import role_names
from shadowlab.core.errors import ConfigError
from shadowlab.core.settings import Settings
from shadowlab.embedded.broker import free_port
from shadowlab.roles import ROLE_NAMES
from shadowlab.testing import (
    UNREACHABLE_URL,
    build_config,
    models_at,
    route_config,
    write_config,
)

TOKEN = "up-" + uuid.uuid4().hex

CONFIG: dict[str, Any] = {
    "models": models_at(UNREACHABLE_URL, "gpt-4", "gpt-4o", "judge"),
    "routes": [route_config("gpt-4", "gpt-4o", name="faq")],
    "judge": {"model": "judge"},
}


def _http(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_role_names_default_to_every_role_and_skip_the_judge_without_a_model() -> None:
    names, notices = role_names(None, Settings())
    assert names == [n for n in ROLE_NAMES if n != "judge"]
    assert "judge role skipped" in notices[0]
    with_judge = Settings(models=[{"name": "j", "base_url": "http://x/v1"}], judge={"model": "j"})
    assert role_names(None, with_judge) == (list(ROLE_NAMES), [])
    assert role_names("gates, sink", Settings()) == (["sink", "gates"], [])
    with pytest.raises(ConfigError, match="unknown role"):
        role_names("sink,sinks", Settings())
    with pytest.raises(ConfigError, match="twice"):
        role_names("sink,sink", Settings())
    with pytest.raises(ConfigError, match=r"needs judge\.model"):
        role_names("judge", Settings())


def test_up_serves_every_role_and_the_api_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    data = build_config(tmp_path / "data", **CONFIG, admin={"port": port})
    config = write_config(tmp_path / "shadowlab.yaml", data)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWLAB_")}
    env.update({"SHADOWLAB_ADMIN__TOKEN": TOKEN, "COLUMNS": "200"})
    base = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    with subprocess.Popen(
        [sys.executable, "-m", "shadowlab", "up", "--config", str(config)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as up:  # fmt: skip
        try:
            health: Any = None
            while time.monotonic() - started < 40:
                assert up.poll() is None, "shadowlab up exited early"
                try:
                    status, health = _http("GET", f"{base}/health")
                    if status == 200:
                        break
                except OSError:
                    pass  # not listening yet
                time.sleep(0.1)
            assert health == {"status": "ok", "roles": dict.fromkeys(ROLE_NAMES, "running")}
            body = {"candidate": "gpt-4o", "reason": "cheaper", "actor": "ci"}
            assert _http("POST", f"{base}/rollout/faq/start", body)[0] == 401
            status, done = _http("POST", f"{base}/rollout/faq/start", body, token=TOKEN)
            assert status == 200, done
            assert done["flags"]["primary"] == "gpt-4"  # the flags had none: the route's
            status, flags = _http("GET", f"{base}/flags")
            assert status == 200
            assert [(f["route"], f["stage"], f["canary"], f["changed_by"]) for f in flags] == [
                ("faq", "offline", "gpt-4o", "ci")
            ]
        finally:
            up.send_signal(signal.SIGTERM)
            out, err = up.communicate(timeout=30)
    assert up.returncode == 0, err[-3000:]
    assert f"admin API   {base}" in out
    assert "roles       sink, shadow, join, judge, gates" in out
    assert TOKEN not in out + err
    assert time.monotonic() - started < 60


def test_up_shares_the_in_process_engine_between_its_threads(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from shadowlab.cli_up import clickhouse_clients

    shared: Any = object()  # never used as a client here: chDB's branch only hands it out
    with ExitStack() as cleanup:
        clients = clickhouse_clients(Settings(data_dir=tmp_path), shared, cleanup)
        assert clients() is shared
        assert clients() is shared
