"""Deprecated alias of :mod:`shadowlab.testing.pytest_plugin` (removed in 0.3)."""

from __future__ import annotations

from shadowlab._moved import warn_moved
from shadowlab.testing.pytest_plugin import *  # noqa: F403 - an alias

warn_moved(__name__, "shadowlab.testing.pytest_plugin")
