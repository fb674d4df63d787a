"""Pause Python's cyclic garbage collector around allocation-heavy, cycle-free work.

Decoding a batch of events allocates millions of small objects that reference counting
frees; the cyclic collector, triggered every few hundred allocations, then re-scans every
surviving object and made the sink's decode loop 3–5× slower (``bench/sink.py``). Events
have no reference cycles, so pausing the collector while batches flow loses nothing (the
sink resumes it when idle, and at least every second). Pauses nest across threads: the
collector runs again when the last pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_depth = 0
_enable_after = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Disable the cyclic collector inside the block; the last pause to end restores it."""
    global _depth, _enable_after  # noqa: PLW0603 - one process-wide pause count
    with _lock:
        if _depth == 0:
            _enable_after = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _enable_after:
                gc.enable()
