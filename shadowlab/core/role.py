"""The :class:`Role` protocol: what ``shadowlab run``, ``up``, the demo and tests run."""

from __future__ import annotations

from typing import Protocol


class Role(Protocol):
    """A stream role: ``run()`` loops in the calling thread until ``stop()``."""

    @property
    def counters(self) -> object:
        """What the role did so far (shown when a test times out, exported as metrics)."""

    def run(self) -> None:
        """Loop until stopped."""

    def stop(self) -> None:
        """Ask the loop to finish its batch and return."""


__all__ = ["Role"]
