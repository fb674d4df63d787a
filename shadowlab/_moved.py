"""The warning of an import path that moved (kept for one release as a thin alias)."""

from __future__ import annotations

import warnings


def warn_moved(old: str, new: str) -> None:
    """Warn the importer of ``old`` (two frames up: past the alias) to import ``new``."""
    warnings.warn(
        f"{old} is deprecated and will be removed in shadowlab 0.3: import {new}",
        DeprecationWarning,
        stacklevel=3,
    )
