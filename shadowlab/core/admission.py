"""Event-time admission: what event times a role accepts, around its own wall clock.

A producer's clock can be wrong, or forged: an event dated next month would otherwise be
replayed, joined, stored and counted as if it had happened. Every role admits an event time
only inside the band :class:`EventTimeBand` describes (``admission`` settings):

- at most ``max_ahead_s`` (300 s) ahead of the role's wall clock;
- at most ``max_age_s`` old, when set (default: no limit, so a replay of recorded traffic of
  any age is admitted: set it to the data's retention);
- inside ``DateTime64(6)``'s range (the event models refuse anything else).

An event outside the band goes to the dead-letter topic with an
:class:`~shadowlab.core.errors.EventTimeOutOfBandError` naming the band.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shadowlab.core.errors import EventTimeOutOfBandError


@dataclass(frozen=True)
class EventTimeBand:
    """The event times a role admits, relative to its wall clock ``now``."""

    max_ahead_s: float = 300.0
    max_age_s: float | None = None

    def refusal(self, event_time: dt.datetime, now: dt.datetime) -> EventTimeOutOfBandError | None:
        """Why ``event_time`` is not admitted at ``now``, or None when it is."""
        ahead = (event_time - now).total_seconds()
        if ahead > self.max_ahead_s:
            return EventTimeOutOfBandError(
                f"event_time {_iso(event_time)} is {ahead:,.0f} s ahead of this role's clock "
                f"({_iso(now)}); events may be at most {self.max_ahead_s:g} s ahead "
                "(admission.max_ahead_s): check the producer's clock"
            )
        if self.max_age_s is not None and -ahead > self.max_age_s:
            return EventTimeOutOfBandError(
                f"event_time {_iso(event_time)} is {-ahead:,.0f} s old at {_iso(now)}; events "
                f"may be at most {self.max_age_s:g} s old (admission.max_age_s, the retention)"
            )
        return None

    def admit(self, event_time: dt.datetime, now: dt.datetime) -> None:
        """Raise :meth:`refusal`'s error when ``event_time`` is not admitted at ``now``.

        Raises:
            EventTimeOutOfBandError: naming the band.
        """
        refusal = self.refusal(event_time, now)
        if refusal is not None:
            raise refusal


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


__all__ = ["EventTimeBand"]
