"""The Router: sticky weighted canary routing with an instant override.

``choose()`` is pure in-memory work: it reads an immutable snapshot of the flags (replaced
whole, never mutated, by :meth:`Router.apply`), so it takes no lock and does no I/O.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from producers.hashing import BUCKETS, bucket
from schemas import RoutingFlags
from shadowlab.exceptions import UnknownRouteError

ArmName = Literal["primary", "canary", "override"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one request goes: the model, why (the arm), and the flags that decided it."""

    model: str
    arm: ArmName
    flags_version: int
    bucket: int


class Router:
    """Routes requests of each route to its primary, canary or override model.

    The key (a user or session id) is hashed with the route's salt into 10,000 buckets; the
    canary gets the buckets below its weight (in basis points), so a user in the canary stays
    there as the weight grows and a conversation keeps one model. Without a key, a random
    bucket is drawn. An ``override`` sends everyone to that model.

    Args:
        flags: initial flags (e.g. from the last-known-good cache).
    """

    def __init__(self, flags: Iterable[RoutingFlags] = ()) -> None:
        self._flags: Mapping[str, RoutingFlags] = {}
        self._write_lock = threading.Lock()
        self._random = random.Random()  # noqa: S311 - load spreading, not security
        self._listeners: list[threading.Event] = []
        for item in flags:
            self.apply(item)

    def choose(self, route: str, key: str | None = None) -> Assignment:
        """Return the model for one request of ``route`` by the user/session ``key``.

        Raises:
            UnknownRouteError: no flags exist for ``route`` (the message lists known routes).
        """
        flags = self._flags.get(route)
        if flags is None:
            known = ", ".join(sorted(self._flags)) or "none yet"
            raise UnknownRouteError(
                f"unknown route {route!r} (routes with flags: {known}); create it with "
                f"`shadowlab flags set {route} --primary MODEL`"
            )
        slot = bucket(flags.salt, key) if key is not None else self._random.randrange(BUCKETS)
        if flags.override is not None:
            return Assignment(flags.override, "override", flags.version, slot)
        if flags.canary is not None and slot < flags.canary_weight_bp:
            return Assignment(flags.canary, "canary", flags.version, slot)
        return Assignment(flags.primary, "primary", flags.version, slot)

    def apply(self, flags: RoutingFlags) -> bool:
        """Install ``flags`` unless the route already has this version or a newer one.

        Returns:
            Whether the flags were installed.
        """
        with self._write_lock:
            current = self._flags.get(flags.route)
            if current is not None and current.version >= flags.version:
                return False
            self._flags = {**self._flags, flags.route: flags}  # readers see old or new, whole
            for waiter in self._listeners:
                waiter.set()
            return True

    def flags(self, route: str) -> RoutingFlags | None:
        """Return the flags in force for ``route``, if any."""
        return self._flags.get(route)

    def snapshot(self) -> dict[str, RoutingFlags]:
        """Return every route's flags in force."""
        return dict(self._flags)

    def version(self, route: str) -> int:
        """Return the flags version in force for ``route`` (0 when none: versions start at 1)."""
        flags = self._flags.get(route)
        return flags.version if flags is not None else 0

    def changed(self) -> threading.Event:
        """Return an event set on every installed change (for waiters; clear it yourself)."""
        waiter = threading.Event()
        with self._write_lock:
            self._listeners.append(waiter)
        return waiter
