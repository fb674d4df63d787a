"""The Router a service embeds: kept current from ``routing.flags``, seeded from a cache."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

from producers.router import Router
from shadowlab.core.flags_io import DEFAULT_MAX_VERSION_STEP, NO_KEYS, FlagsReader, load_cache
from shadowlab.core.flags_signing import FlagsKeys


class LiveRouter(Router):
    """A :class:`Router` kept current by a :class:`FlagsReader`, seeded from the cache file.

    What a service embeds::

        with LiveRouter(conf, "routing.flags", cache_path=Path("/var/cache/app/flags.json")) as r:
            assignment = r.choose("support-answer", key=user_id)

    When Kafka is down at start, the router serves the cached flags until the reader
    catches up. With ``keys`` (``FlagsKeys.of(SecretStr(key))``), only flags signed with a
    known key are installed.
    """

    def __init__(
        self,
        connection: Mapping[str, str],
        topic: str = "routing.flags",
        *,
        cache_path: Path | None = None,
        fetch_wait_ms: int = 10,
        keys: FlagsKeys = NO_KEYS,
        max_version_step: int = DEFAULT_MAX_VERSION_STEP,
    ) -> None:
        super().__init__(load_cache(cache_path) if cache_path is not None else ())
        self.reader = FlagsReader(
            self,
            connection,
            topic,
            cache_path=cache_path,
            fetch_wait_ms=fetch_wait_ms,
            keys=keys,
            max_version_step=max_version_step,
        )

    def start(self) -> Self:
        """Start following the flags topic."""
        self.reader.start()
        return self

    def close(self) -> None:
        """Stop following the flags topic."""
        self.reader.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
