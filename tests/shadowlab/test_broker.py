"""The embedded broker: starts fast, fails clearly, and never outlives its parent."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from shadowlab.core.errors import BrokerBinaryNotFoundError, PortInUseError
from shadowlab.embedded.broker import EmbeddedBroker, free_port

REPO = Path(__file__).resolve().parents[2]


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_broker_answers_metadata_and_stops(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        pid = broker.pid
        assert pid is not None
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(
            timeout=5
        )
        assert 111 in metadata.brokers  # Tansu's node id
    assert not broker.is_running()
    assert _wait_gone(pid)


def test_exception_inside_the_block_stops_the_broker() -> None:
    pid = None
    with pytest.raises(RuntimeError, match="boom"), EmbeddedBroker() as broker:  # noqa: PT012
        pid = broker.pid
        raise RuntimeError("boom")
    assert pid is not None
    assert _wait_gone(pid)


def test_taken_port_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"port {port} on 127.0.0.1 is already in use"):
            EmbeddedBroker(port=port).start()


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", "/nonexistent/tansu")
    with pytest.raises(BrokerBinaryNotFoundError, match="SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS"):
        EmbeddedBroker().start()


def test_broker_dies_with_a_sigkilled_parent() -> None:
    code = textwrap.dedent("""
        import sys, time
        from shadowlab.embedded.broker import EmbeddedBroker
        broker = EmbeddedBroker().start()
        print(broker.pid, flush=True)
        time.sleep(60)
    """)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=_env(), text=True
    ) as parent:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.kill()
    assert _wait_gone(pid), "broker outlived its SIGKILLed parent"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_cli_broker_stops_on_signal(sig: signal.Signals, tmp_path: Path) -> None:
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "shadowlab", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**_env(), "COLUMNS": "300"},
        cwd=tmp_path,
        text=True,
    ) as cli:
        assert cli.stdout is not None
        line = cli.stdout.readline()
        match = re.search(r"on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", line)
        assert match, line
        assert int(match[1]) == port
        pid = int(match[2])
        assert _alive(pid)
        cli.send_signal(sig)
        assert cli.wait(timeout=15) in (0, 128 + sig)
    assert _wait_gone(pid)


def test_cli_broker_on_a_taken_port_exits_3_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "shadowlab", "broker", "--port", str(port)],
            capture_output=True,
            env={**_env(), "COLUMNS": "300"},
            cwd=tmp_path,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 3
    assert f"port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "Traceback" not in done.stderr


def test_session_broker_is_gone_after_a_failing_test(pytester: pytest.Pytester) -> None:
    pid_file = pytester.path / "broker.pid"
    pytester.makepyfile(
        test_fails=f"""
        def test_fails(broker):
            open({str(pid_file)!r}, "w").write(str(broker.pid))
            assert False, "this test fails on purpose"
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "shadowlab.testing.pytest_plugin", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(failed=1)
    pid = int(pid_file.read_text())
    assert _wait_gone(pid), "the broker outlived the failing pytest session"
