"""The Router: sticky weighted canary routing with an instant override.

``choose()`` is pure in-memory work: it reads an immutable snapshot of the flags (replaced
whole, never mutated, by :meth:`~shadowlab.core.flags.FlagsTable.apply`), so it takes no
lock and does no I/O.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from producers.hashing import BUCKETS, bucket
from schemas import RoutingFlags
from shadowlab.core.errors import UnknownRouteError
from shadowlab.core.flags import FlagsTable

ArmName = Literal["primary", "canary", "override"]


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where one request goes: the model, why (the arm), and the flags that decided it."""

    model: str
    arm: ArmName
    flags_version: int
    bucket: int


class Router(FlagsTable):
    """Routes requests of each route to its primary, canary or override model.

    The key (a user or session id) is hashed with the route's salt into 10,000 buckets; the
    canary gets the buckets below its weight (in basis points), so a user in the canary stays
    there as the weight grows and a conversation keeps one model. Without a key, a random
    bucket is drawn. An ``override`` sends everyone to that model.

    Args:
        flags: initial flags (e.g. from the last-known-good cache).
    """

    def __init__(self, flags: Iterable[RoutingFlags] = ()) -> None:
        self._random = random.Random()  # noqa: S311 - load spreading, not security
        super().__init__(flags)

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
