"""Every stream role in one process: what ``shadowlab up`` and ``shadowlab demo`` run.

``shadowlab run ROLE`` runs one role per process (one container per role); a
:class:`RoleSet` runs several, each in its own thread, against one Kafka and one ClickHouse
client. A role that raises is recorded (``RoleSet.failures``) and the others go on: the
caller decides whether to stop (``up`` reports it on ``/health``; ``demo`` stops).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Self

from shadowlab.core.errors import ConfigError

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

    from shadowlab.core.role import Role
    from shadowlab.core.settings import Settings

log = logging.getLogger(__name__)

#: The stream roles, in the order they are started (consumers of a topic after its producers
#: would also work: every role reads from the committed offsets).
ROLE_NAMES = ("sink", "shadow", "join", "judge", "gates")

StageOf = Callable[[str], str | None]


def build_role(
    name: str,
    settings: Settings,
    connection: Mapping[str, str],
    *,
    stage_of: StageOf,
    clickhouse: Client | None = None,
    embedded: bool = False,
) -> Role:
    """Construct one role (not started).

    Args:
        name: one of :data:`ROLE_NAMES`.
        settings: the configuration.
        connection: the librdkafka connection config.
        stage_of: the current stage of a route (from ``routing.flags``), for the roles that
            follow it (shadow, join, judge).
        clickhouse: the ClickHouse client (the sink and gates roles need one).
        embedded: Kafka is the embedded broker (the join role then sends one message per
            producer batch, which Tansu needs).

    Raises:
        ConfigError: an unknown role, a role that needs ClickHouse without a client, or the
            judge role without ``judge.model``.
    """
    if name in ("sink", "gates") and clickhouse is None:
        raise ConfigError(f"the {name} role needs a ClickHouse client")
    if name == "sink":
        from sinks.clickhouse import ClickHouseSink  # noqa: PLC0415 - keeps `--help` fast
        from sinks.role import SinkRole  # noqa: PLC0415

        assert clickhouse is not None  # noqa: S101 - checked above; narrows the type
        sink = ClickHouseSink(clickhouse, settings.clickhouse.database)
        return SinkRole(settings, connection, sink)
    if name == "gates":
        from processors.gates.role import GatesRole  # noqa: PLC0415

        assert clickhouse is not None  # noqa: S101
        return GatesRole(settings, connection, clickhouse)
    if name == "shadow":
        from processors.shadow import ShadowRole  # noqa: PLC0415

        return ShadowRole(settings, connection, stage_of=stage_of)
    if name == "join":
        from processors.join import JoinRole  # noqa: PLC0415 - faust is slow to import

        return JoinRole(
            settings, connection["bootstrap.servers"], stage_of=stage_of, embedded=embedded
        )
    if name == "judge":
        from processors.judge.role import JudgeRole  # noqa: PLC0415

        return JudgeRole(settings, connection, stage_of=stage_of)
    raise ConfigError(f"unknown role {name!r}; roles: {', '.join(ROLE_NAMES)}")


@dataclass
class _Running:
    name: str
    role: Role
    thread: threading.Thread
    error: BaseException | None = None
    finished: threading.Event = field(default_factory=threading.Event)


class RoleSet:
    """Runs roles in threads of this process; ``stop()`` finishes each one's current batch.

    Use as a context manager: the roles start on entry and stop (and are joined) on exit.
    """

    def __init__(self, roles: Mapping[str, Role]) -> None:
        self._running = {
            name: _Running(name, role, threading.Thread(target=self._target, args=(name,)))
            for name, role in roles.items()
        }
        for running in self._running.values():
            running.thread.name = f"role-{running.name}"
            running.thread.daemon = True

    @classmethod
    def build(
        cls,
        names: Iterable[str],
        settings: Settings,
        connection: Mapping[str, str],
        *,
        stage_of: StageOf,
        clickhouse: Client | None = None,
        embedded: bool = False,
    ) -> Self:
        """Construct the named roles (see :func:`build_role`)."""
        roles = {
            name: build_role(
                name,
                settings,
                connection,
                stage_of=stage_of,
                clickhouse=clickhouse,
                embedded=embedded,
            )
            for name in names
        }
        return cls(roles)

    @property
    def roles(self) -> dict[str, Role]:
        """The roles by name."""
        return {name: r.role for name, r in self._running.items()}

    def _target(self, name: str) -> None:
        running = self._running[name]
        try:
            running.role.run()
        except BaseException as exc:  # recorded, reported by failures() and /health
            running.error = exc
            log.exception("role %s stopped with an error", name)
        finally:
            running.finished.set()

    def start(self) -> None:
        """Start every role's loop in its thread."""
        for running in self._running.values():
            running.thread.start()

    def alive(self) -> dict[str, bool]:
        """Whether each role's loop is still running."""
        return {name: not r.finished.is_set() for name, r in self._running.items()}

    def failures(self) -> dict[str, BaseException]:
        """The roles whose loop raised, with the exception."""
        return {n: r.error for n, r in self._running.items() if r.error is not None}

    def counters(self) -> dict[str, object]:
        """Each role's counters (what it did so far)."""
        return {name: r.role.counters for name, r in self._running.items()}

    def partition_lags(self) -> dict[str, dict[tuple[str, int], int]]:
        """Each librdkafka role's lag per (topic, partition) (the faust join has none)."""
        out: dict[str, dict[tuple[str, int], int]] = {}
        for name, running in self._running.items():
            lag = getattr(running.role, "partition_lag", None)
            if callable(lag):
                out[name] = lag()
        return out

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask every role to stop, newest first, and wait up to ``timeout_s`` for each."""
        for running in reversed(self._running.values()):
            running.role.stop()
        for running in reversed(self._running.values()):
            if running.thread.is_alive():
                running.thread.join(timeout_s)
            if running.thread.is_alive():
                log.warning("role %s did not stop within %g s", running.name, timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
