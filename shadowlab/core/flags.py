"""Routing flags: pure changes (set, rollback, clear override), and the table of those in force.

Each change returns a new :class:`RoutingFlags` with ``version = current + 1``; nothing here
does I/O. :class:`FlagsTable` holds the flags in force per route (the newest version wins);
the service's :class:`~producers.router.Router` is one, and :mod:`shadowlab.core.flags_io`
reads and writes them on the ``routing.flags`` topic. Every writer of flags (the rollout
controller, the CLI, the admin API) shares these functions.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterable, Mapping

from schemas import EventValidationError, RoutingFlags, Stage
from shadowlab.core.errors import InvalidFlagsChangeError, UnknownRouteError


class FlagsTable:
    """The flags in force per route: a newer version replaces the route's flags, whole.

    Reads take no lock: they see an immutable mapping that :meth:`apply` replaces.

    Args:
        flags: initial flags (e.g. from the last-known-good cache).
    """

    def __init__(self, flags: Iterable[RoutingFlags] = ()) -> None:
        self._flags: Mapping[str, RoutingFlags] = {}
        self._write_lock = threading.Lock()
        self._listeners: list[threading.Event] = []
        for item in flags:
            self.apply(item)

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


def _require(current: RoutingFlags | None, route: str) -> RoutingFlags:
    if current is None:
        raise UnknownRouteError(
            f"route {route!r} has no flags yet; create them with "
            f"`shadowlab flags set {route} --primary MODEL`"
        )
    return current


def _build(data: dict[str, object]) -> RoutingFlags:
    try:
        return RoutingFlags.parse(data)
    except EventValidationError as exc:
        raise InvalidFlagsChangeError(str(exc)) from None


def _next(
    flags: RoutingFlags, actor: str, reason: str, now: dt.datetime, **changes: object
) -> RoutingFlags:
    """``flags`` one version on, with ``changes`` and who/when/why recorded."""
    return _build(
        {
            **flags.model_dump(),
            **changes,
            "version": flags.version + 1,
            "changed_at": now,
            "changed_by": actor,
            "reason": reason,
        }
    )


def weight_bp(percent: float) -> int:
    """Convert a canary weight in percent (0–100) to basis points.

    Raises:
        InvalidFlagsChangeError: outside 0–100.
    """
    if not 0 <= percent <= 100:
        raise InvalidFlagsChangeError(
            f"canary weight must be a percentage from 0 to 100; got {percent:g}"
        )
    return round(percent * 100)


def set_flags(
    current: RoutingFlags | None,
    *,
    route: str,
    primary: str,
    canary: str | None,
    canary_weight_bp: int,
    actor: str,
    reason: str,
    now: dt.datetime,
    shadow_candidates: list[str] | None = None,
    stage: Stage | None = None,
) -> RoutingFlags:
    """Return the flags after setting primary, canary and weight (override cleared).

    A new canary model gets a new salt, so each rollout draws its own canary users; the same
    canary keeps its salt, so users stay in the canary as the weight grows.

    Raises:
        InvalidFlagsChangeError: same model as primary and canary, weight without canary,
            weight out of range.
    """
    if canary is not None and canary == primary:
        raise InvalidFlagsChangeError(
            f"canary and primary are the same model ({primary!r}); pick a different canary, "
            "or omit --canary to send everyone to the primary"
        )
    if canary is None and canary_weight_bp > 0:
        raise InvalidFlagsChangeError("a canary weight needs a canary model: add --canary MODEL")
    same_rollout = current is not None and current.canary == canary and canary is not None
    salt = current.salt if same_rollout and current is not None else secrets.token_hex(8)
    if stage is None:
        stage = "promoted" if canary is None else ("canary" if canary_weight_bp else "shadow")
    if shadow_candidates is None:
        shadow_candidates = list(current.shadow_candidates) if current is not None else []
    return _build(
        {
            "route": route,
            "version": (current.version + 1) if current is not None else 1,
            "stage": stage,
            "primary": primary,
            "canary": canary,
            "canary_weight_bp": canary_weight_bp,
            "override": None,
            "salt": salt,
            "shadow_candidates": shadow_candidates,
            "changed_at": now,
            "changed_by": actor,
            "reason": reason,
        }
    )


def rollback(
    current: RoutingFlags | None,
    *,
    route: str,
    actor: str,
    reason: str,
    now: dt.datetime,
    event_time: dt.datetime | None = None,
) -> RoutingFlags:
    """Return the flags after a rollback: override = primary and canary weight 0, in one write.

    Raises:
        UnknownRouteError: the route has no flags.
        InvalidFlagsChangeError: no reason given.
    """
    flags = _require(current, route)
    if not reason.strip():
        raise InvalidFlagsChangeError("a rollback needs a reason: add --reason TEXT")
    return _next(
        flags,
        actor,
        reason,
        now,
        stage="rolled_back",
        override=flags.primary,
        canary_weight_bp=0,
        paused=False,
        stage_since=event_time or flags.step_since,
        step_since=event_time or flags.step_since,
    )


def clear_override(
    current: RoutingFlags | None, *, route: str, actor: str, reason: str, now: dt.datetime
) -> RoutingFlags:
    """Return the flags with the override removed (weights unchanged).

    Raises:
        UnknownRouteError: the route has no flags.
        InvalidFlagsChangeError: there is no override to clear.
    """
    flags = _require(current, route)
    if flags.override is None:
        raise InvalidFlagsChangeError(f"route {route!r} has no override to clear")
    return _next(flags, actor, reason, now, override=None)


def start_rollout(
    current: RoutingFlags | None,
    *,
    route: str,
    candidate: str,
    actor: str,
    reason: str,
    now: dt.datetime,
    primary: str | None = None,
) -> RoutingFlags:
    """Return the flags that begin a rollout of ``candidate``: stage ``offline``, weight 0.

    Everyone keeps the primary; the controller moves the route on from here, through shadow
    and canary, as gates pass. The canary gets a fresh salt.

    Raises:
        InvalidFlagsChangeError: the candidate is the primary, or no primary is known.
    """
    primary = primary or (current.primary if current is not None else None)
    if primary is None:
        raise InvalidFlagsChangeError(
            f"route {route!r} has no flags yet: give the model it runs now with --primary"
        )
    if current is not None and current.stage in ("offline", "shadow", "canary"):
        raise InvalidFlagsChangeError(
            f"route {route!r} is already rolling out {current.canary!r} ({current.stage}); "
            "roll it back or let it finish before starting another"
        )
    return set_flags(
        current,
        route=route,
        primary=primary,
        canary=candidate,
        canary_weight_bp=0,
        actor=actor,
        reason=reason,
        now=now,
        shadow_candidates=[candidate],
        stage="offline",
    )


def advance(
    flags: RoutingFlags,
    *,
    stage: Stage,
    weight: int,
    event_time: dt.datetime,
    actor: str,
    reason: str,
    now: dt.datetime,
) -> RoutingFlags:
    """Return ``flags`` moved to ``stage`` at canary weight ``weight`` (basis points).

    ``event_time`` (the controller's watermark) starts the new step, and the new stage
    when the stage changes.
    """
    new_stage = flags.stage != stage
    return _next(
        flags,
        actor,
        reason,
        now,
        stage=stage,
        canary_weight_bp=weight,
        stage_since=event_time if new_stage else flags.stage_since,
        step_since=event_time,
    )


def promote(
    current: RoutingFlags | None,
    *,
    route: str,
    actor: str,
    reason: str,
    now: dt.datetime,
    event_time: dt.datetime | None = None,
) -> RoutingFlags:
    """Return the flags after promotion: the canary becomes the primary, for everyone.

    Raises:
        UnknownRouteError: the route has no flags.
        InvalidFlagsChangeError: the route is not in canary (promotion never skips shadow
            or canary).
    """
    flags = _require(current, route)
    if flags.stage != "canary" or flags.canary is None:
        raise InvalidFlagsChangeError(
            f"route {route!r} is in stage {flags.stage!r}: only a canary can be promoted "
            "(a rollout goes offline → shadow → canary first)"
        )
    return _next(
        flags,
        actor,
        reason,
        now,
        stage="promoted",
        primary=flags.canary,
        canary=None,
        canary_weight_bp=0,
        override=None,
        paused=False,
        shadow_candidates=[c for c in flags.shadow_candidates if c != flags.canary],
        stage_since=event_time or flags.step_since,
        step_since=event_time or flags.step_since,
    )


def set_paused(
    current: RoutingFlags | None,
    *,
    route: str,
    paused: bool,
    actor: str,
    reason: str,
    now: dt.datetime,
) -> RoutingFlags:
    """Return the flags with the rollout paused (the controller takes no action) or resumed.

    Raises:
        UnknownRouteError: the route has no flags.
        InvalidFlagsChangeError: no reason, nothing rolling out, or already in that state.
    """
    flags = _require(current, route)
    verb = "pause" if paused else "resume"
    if not reason.strip():
        raise InvalidFlagsChangeError(f"a {verb} needs a reason: add --reason TEXT")
    if flags.stage not in ("offline", "shadow", "canary"):
        raise InvalidFlagsChangeError(
            f"route {route!r} is {flags.stage}: there is no rollout to {verb}"
        )
    if flags.paused == paused:
        raise InvalidFlagsChangeError(f"route {route!r} is already {verb}d")
    return _next(flags, actor, reason, now, paused=paused)
