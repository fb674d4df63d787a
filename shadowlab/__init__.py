"""shadowlab: shadow replay, paired comparisons, anytime-valid gates and instant rollback.

The package is built in one-way layers (the README's "Layout" draws them): ``schemas`` →
:mod:`shadowlab.core` → ``producers`` / ``sinks`` / ``processors`` →
:mod:`shadowlab.embedded` and :mod:`shadowlab.testing` → the app (CLI, admin API, demo,
report). This ``__init__`` is the app's public surface: the errors, eagerly (they are light),
and the settings, on first use, so that a service importing ``producers`` (which imports
``shadowlab.core``) never loads pydantic-settings or YAML.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shadowlab.core.errors import (
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

if TYPE_CHECKING:
    from shadowlab.core.settings import Settings, load_settings

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``Settings`` and ``load_settings``, imported on first use."""
    if name in ("Settings", "load_settings"):
        from shadowlab.core import settings  # noqa: PLC0415 - pydantic-settings is heavy

        return getattr(settings, name)
    raise AttributeError(f"module 'shadowlab' has no attribute {name!r}")


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
