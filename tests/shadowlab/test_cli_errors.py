"""An operator's mistake ends a command with one line saying what to do, and exit status 3."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shadowlab.core.errors import ClickHouseError
from sinks.clickhouse import open_client


def test_an_unreachable_kafka_is_one_line_and_exit_3(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
        "SHADOWLAB_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "shadowlab", "run", "sink"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 3
    assert "Traceback" not in result.stderr
    assert "cannot reach Kafka at 127.0.0.1:9" in result.stderr
    assert "SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS" in result.stderr


def test_an_unusable_embedded_clickhouse_path_says_which_and_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(ClickHouseError, match=r"cannot use .*a-file/ch for the embedded"):
        open_client(f"chdb://{blocker}/ch")
