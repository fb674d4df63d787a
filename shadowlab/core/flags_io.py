"""Routing flags on Kafka: a background reader that keeps a flags table current, and a writer.

The ``routing.flags`` topic is keyed by route; the last value per key wins, and a reader
never installs a version older than the one it has (so no reliance on compaction, which the
embedded broker never does). Every installed change is also written to a last-known-good
cache file, so a service that restarts while Kafka is down routes by the flags it last saw.
Services embed :class:`~producers.live_router.LiveRouter` (a Router fed by a
:class:`FlagsReader`); every writer (controller, CLI, admin API) uses :class:`FlagsClient`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas import EventValidationError, RoutingFlags
from shadowlab.core.errors import FlagsConflictError, InvalidFlagsChangeError, StackError
from shadowlab.core.flags import FlagsTable
from shadowlab.core.flags_signing import FlagsKeys

if TYPE_CHECKING:
    from shadowlab.core.settings import Settings

log = logging.getLogger(__name__)

#: No keys: flags are neither signed nor checked.
NO_KEYS = FlagsKeys()
#: The largest version step a reader installs past a route's installed version.
DEFAULT_MAX_VERSION_STEP = 1000


def load_cache(path: Path) -> list[RoutingFlags]:
    """Read the last-known-good flags; a missing or unreadable file gives no flags (logged)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [RoutingFlags.parse(item) for item in data["flags"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError, EventValidationError) as exc:
        log.warning("ignoring unreadable flags cache %s: %s", path, exc)
        return []


def save_cache(path: Path, flags: Mapping[str, RoutingFlags]) -> None:
    """Write the flags atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    payload = {"flags": [json.loads(f.to_json()) for f in flags.values()]}
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(payload, out, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


class FlagsOptions(TypedDict):
    """The keyword arguments of a flags reader or client that the settings decide."""

    keys: FlagsKeys
    max_version_step: int


def flags_options(settings: Settings) -> FlagsOptions:
    """The configured flags keys and version step, for ``FlagsClient`` and ``LiveRouter``."""
    return {"keys": settings.flags.keys(), "max_version_step": settings.flags.max_version_step}


class FlagsReader:
    """Applies every change on the flags topic to a :class:`FlagsTable`, in a daemon thread.

    It reads the whole topic from the start (no consumer group: nothing to join, so it is
    ready at once), with a short fetch wait so changes apply within tens of milliseconds.

    Args:
        table: the flags table (a service's Router) to keep current.
        connection: librdkafka connection config.
        topic: the flags topic.
        cache_path: the last-known-good cache to write on every change (optional).
        keep_history: remember every applied version (for ``flags history``).
        keys: with a key configured, only messages signed with a known key are installed.
        max_version_step: a version more than this past the route's installed one is
            refused (a forged ``2**63 - 1`` would make every later change look stale).

    Messages refused (unsigned, forged, a version jump) are counted in :attr:`rejected`
    and logged with their partition and offset, never installed.
    """

    def __init__(
        self,
        table: FlagsTable,
        connection: Mapping[str, str],
        topic: str,
        *,
        cache_path: Path | None = None,
        keep_history: bool = False,
        fetch_wait_ms: int = 10,
        keys: FlagsKeys = NO_KEYS,
        max_version_step: int = DEFAULT_MAX_VERSION_STEP,
    ) -> None:
        self.table = table
        self.keys = keys
        self.max_version_step = max_version_step
        self.topic = topic
        self.cache_path = cache_path
        self.history: list[RoutingFlags] | None = [] if keep_history else None
        self.applied = 0
        self.stale = 0
        self.malformed = 0
        self.rejected = 0
        self._conf: dict[str, Any] = {
            **connection,
            "logger": log,
            "group.id": f"flags-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": "false",
            "fetch.wait.max.ms": str(fetch_wait_ms),
            "enable.metrics.push": "false",
            "enable.partition.eof": "true",
        }
        self._stop = threading.Event()
        self._caught_up = threading.Event()
        self._thread = threading.Thread(target=self._run, name="flags-reader", daemon=True)

    def start(self) -> Self:
        """Start reading in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait until everything on the topic when reading began has been applied."""
        return self._caught_up.wait(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        consumer = Consumer(self._conf)
        try:
            partitions = self._assign(consumer)
            at_end: set[int] = set()
            while not self._stop.is_set():
                messages = consumer.consume(num_messages=500, timeout=0.1)
                changed = False
                for message in messages:
                    error = message.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            at_end.add(message.partition() or 0)
                        else:
                            log.warning("flags reader: %s", error)
                        continue
                    at_end.discard(message.partition() or 0)
                    changed |= self._apply(message)
                if changed and self.cache_path is not None:
                    save_cache(self.cache_path, self.table.snapshot())
                if len(at_end) == partitions:
                    self._caught_up.set()
        except Exception:  # pragma: no cover - a reader must never die silently
            log.exception("flags reader stopped")
            raise
        finally:
            consumer.close()

    def _assign(self, consumer: Consumer) -> int:
        delay = 0.1
        while not self._stop.is_set():
            try:
                metadata = consumer.list_topics(self.topic, timeout=2)
                topic = metadata.topics[self.topic]
                if topic.error is None and topic.partitions:
                    consumer.assign([TopicPartition(self.topic, p, 0) for p in topic.partitions])
                    return len(topic.partitions)
            except KafkaException as exc:
                log.info("flags reader waiting for Kafka: %s", exc)
            self._stop.wait(delay)
            delay = min(delay * 2, 2.0)
        return 0

    def _apply(self, message: Message) -> bool:
        payload = message.value() or b""
        headers = message.headers() or []
        pairs = list(headers.items()) if isinstance(headers, dict) else headers
        refusal = self.keys.refusal(message.key() or b"", payload, pairs)
        if refusal is not None:
            return self._reject(message, refusal)
        try:
            flags = RoutingFlags.from_json(payload)
        except EventValidationError as exc:
            self.malformed += 1
            log.warning("ignoring malformed routing flags: %s", exc)
            return False
        installed = self.table.version(flags.route)
        if installed and flags.version > installed + self.max_version_step:
            return self._reject(
                message, f"version jumps from {installed} to {flags.version} of {flags.route!r}"
            )
        if self.table.apply(flags):
            self.applied += 1
            if self.history is not None:
                self.history.append(flags)
            return True
        self.stale += 1
        return False

    def _reject(self, message: Message, reason: str) -> bool:
        self.rejected += 1
        log.warning(
            "refusing routing flags at %s[%s]@%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            reason.encode("unicode_escape").decode("ascii"),
        )
        return False


class FlagsClient:
    """Reads the flags topic to its end, then writes changes and confirms they took.

    A write must carry ``version = current + 1``. After producing it, the client waits until
    its own reader applied that version: if what is in force is not what it wrote, another
    writer got there first and :class:`FlagsConflictError` says so.
    """

    def __init__(
        self,
        connection: Mapping[str, str],
        topic: str,
        timeout_s: float = 10.0,
        *,
        keys: FlagsKeys = NO_KEYS,
        max_version_step: int = DEFAULT_MAX_VERSION_STEP,
    ):
        self.table = FlagsTable()
        self.topic = topic
        self.timeout_s = timeout_s
        self.keys = keys
        self._connection = dict(connection)
        self._reader = FlagsReader(
            self.table,
            connection,
            topic,
            keep_history=True,
            keys=keys,
            max_version_step=max_version_step,
        )
        self._producer: Producer | None = None

    def __enter__(self) -> Self:
        self._reader.start()
        if not self._reader.wait_caught_up(self.timeout_s):
            self._reader.stop()
            raise StackError(
                f"could not read {self.topic} within {self.timeout_s:.0f} s; is Kafka "
                "reachable at the configured bootstrap servers, and does the topic exist "
                "(`shadowlab init`)?"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._reader.stop()
        if self._producer is not None:
            self._producer.flush(5)

    def current(self, route: str) -> RoutingFlags | None:
        """Return the flags in force for ``route``."""
        return self.table.flags(route)

    def all(self) -> dict[str, RoutingFlags]:
        """Return the flags in force for every route."""
        return self.table.snapshot()

    def history(self, route: str) -> list[RoutingFlags]:
        """Return every version of ``route``'s flags applied, oldest first."""
        return [f for f in self._reader.history or [] if f.route == route]

    def publish(self, flags: RoutingFlags) -> RoutingFlags:
        """Write ``flags`` and wait until they are in force.

        Raises:
            InvalidFlagsChangeError: the version is not current + 1.
            FlagsConflictError: another writer's change won.
            TimeoutError: the write was not seen back in time.
        """
        current = self.table.version(flags.route)
        if flags.version <= current:
            raise self._conflict(flags)
        if flags.version != current + 1:
            raise InvalidFlagsChangeError(
                f"flags version {flags.version} for {flags.route!r} skips versions (the next "
                f"one is {current + 1}); re-read the flags and retry"
            )
        if self._producer is None:
            self._producer = Producer(
                {
                    **self._connection,
                    "acks": "all",
                    "linger.ms": "0",
                    "enable.metrics.push": "false",
                }
            )
        value = flags.to_json()
        headers: list[tuple[str, str | bytes | None]] = list(
            self.keys.sign(flags.route.encode(), value)
        )
        self._producer.produce(self.topic, key=flags.route, value=value, headers=headers)
        if self._producer.flush(self.timeout_s) > 0:
            raise TimeoutError(f"could not deliver the flags change to {self.topic}")
        deadline = time.monotonic() + self.timeout_s
        while self.table.version(flags.route) < flags.version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the flags change was not read back from {self.topic}")
            time.sleep(0.005)
        if self.table.flags(flags.route) != flags:
            raise self._conflict(flags)
        return flags

    def _conflict(self, flags: RoutingFlags) -> FlagsConflictError:
        in_force = self.table.flags(flags.route)
        who = f"{in_force.changed_by}: {in_force.reason!r}" if in_force is not None else "?"
        return FlagsConflictError(
            f"another writer changed {flags.route!r} first (version "
            f"{in_force.version if in_force else '?'} by {who}); re-read the flags and retry"
        )
