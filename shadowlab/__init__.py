"""shadowlab: shadow replay, paired comparisons, anytime-valid gates and instant rollback.

The public surface of the app package: settings, the embedded stack and the errors.
"""

from __future__ import annotations

__version__ = "0.1.0"

from shadowlab.exceptions import (
    BrokerBinaryNotFoundError,
    BrokerStartError,
    ClickHouseError,
    ConfigError,
    EventValidationError,
    MigrationError,
    PortInUseError,
    ShadowlabError,
    StackError,
)
from shadowlab.settings import Settings, load_settings

__all__ = [
    "BrokerBinaryNotFoundError",
    "BrokerStartError",
    "ClickHouseError",
    "ConfigError",
    "EventValidationError",
    "MigrationError",
    "PortInUseError",
    "Settings",
    "ShadowlabError",
    "StackError",
    "__version__",
    "load_settings",
]
