"""The admin API answers every malformed request with a 4xx JSON error, and forges no log line."""

from __future__ import annotations

import http.client
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from shadowlab.admin import AdminServer
from shadowlab.core.kafka import ensure_topics
from shadowlab.core.logsafe import EscapeControlCharacters, escape_controls
from shadowlab.roles import RoleSet
from shadowlab.testing import make_settings, unique_topics

TOKEN = "t" * 24


@pytest.fixture
def admin(kafka: dict[str, str], tmp_path: Path) -> Iterator[str]:
    settings = make_settings(
        tmp_path, kafka=kafka, topics=unique_topics(partitions=1),
        admin={"port": 0, "token": TOKEN},
    )  # fmt: skip
    ensure_topics(kafka, settings.topics.partitions_of())
    with AdminServer(settings, kafka, RoleSet({})) as server:
        yield server.url


def _post(url: str, path: str, body: bytes, authorization: bytes) -> tuple[int, dict[str, str]]:
    where = urlsplit(url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Authorization", authorization)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_a_non_ascii_token_is_a_401(admin: str) -> None:
    status, body = _post(admin, "/rollout/faq/pause", b'{"reason": "x"}', "Bearer é€☃".encode())
    assert status == 401
    assert "bearer token" in body["error"]


def test_a_deeply_nested_body_is_a_400(admin: str) -> None:
    nested = b'{"reason": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, body = _post(admin, "/rollout/faq/pause", nested, f"Bearer {TOKEN}".encode())
    assert status == 400
    assert "JSON object" in body["error"]


def test_a_reason_over_its_limit_is_a_400_naming_the_limit(admin: str) -> None:
    reason = json.dumps({"reason": "x" * 2001}).encode()
    status, body = _post(admin, "/rollout/faq/pause", reason, f"Bearer {TOKEN}".encode())
    assert status == 400
    assert body["error"] == "field 'reason' is 2001 characters long; the most is 2000"


def test_control_characters_never_reach_a_log_line_raw(caplog: pytest.LogCaptureFixture) -> None:
    caplog.handler.addFilter(EscapeControlCharacters())  # as the CLI's handler has it
    forged = "drill\n2026-12-02 INFO admin API: promoted faq by root\x1b[2J\u2028"
    logging.getLogger("shadowlab.admin").warning("paused %s: %s", "faq", forged)
    (line,) = caplog.messages
    assert not {"\n", "\x1b", "\u2028"} & set(line)
    assert line == "paused faq: " + escape_controls(forged)
    assert escape_controls(forged).endswith("root\\x1b[2J\\u2028")


def test_the_command_line_logs_through_the_escaping_filter() -> None:
    code = (
        "import logging; from shadowlab.cli import _main; _main(config=None, verbose=False); "
        "logging.getLogger('shadowlab.admin').warning('reason: %s', 'x\\nFORGED LINE')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "x\\nFORGED LINE" in result.stderr
    assert not any(line.startswith("FORGED") for line in result.stderr.splitlines())
