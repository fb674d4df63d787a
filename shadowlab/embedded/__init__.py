"""The embedded stack: the Tansu broker subprocess and ``open_stack`` (broker + chDB).

For development, the demo, ``shadowlab up`` and tests; production runs Apache Kafka and a
ClickHouse server with the same code (see the README's "Real components").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadowlab.embedded.broker import EmbeddedBroker, free_port
    from shadowlab.embedded.stack import Stack, open_stack

_EXPORTS = {
    "EmbeddedBroker": "shadowlab.embedded.broker",
    "free_port": "shadowlab.embedded.broker",
    "Stack": "shadowlab.embedded.stack",
    "open_stack": "shadowlab.embedded.stack",
}


def __getattr__(name: str) -> Any:
    """Import what is asked for on first use (the stack loads the ClickHouse client)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shadowlab.embedded' has no attribute {name!r}")
    import importlib  # noqa: PLC0415

    return getattr(importlib.import_module(module), name)


__all__ = ["EmbeddedBroker", "Stack", "free_port", "open_stack"]
