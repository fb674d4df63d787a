"""Deprecated alias of :mod:`shadowlab.core.errors` (removed in 0.3)."""

from __future__ import annotations

from shadowlab._moved import warn_moved
from shadowlab.core.errors import *  # noqa: F403 - an alias

warn_moved(__name__, "shadowlab.core.errors")
