"""Sampled requests and shadow results waiting for each other (pure; the clock is passed in).

Pairwise judging needs the primary answer and the context, which travel on ``llm.requests``,
and the candidate's answer, on ``llm.shadow``; either may be consumed first. This map holds
whichever came first, per ``request_id``, for at most ``ttl_s`` seconds and ``limit``
entries (the oldest go first). It lives in memory; a restarted judge rebuilds it from the
tail of what it had consumed (:meth:`processors.judge.role.JudgeRole.rebuild_pending`).
"""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import dataclass, field

from schemas import ShadowResult


@dataclass(frozen=True)
class PendingRequest:
    """What pairwise judging needs from a request."""

    request_id: str
    route: str
    event_time: dt.datetime
    question: str
    context: tuple[str, ...]
    #: The primary answer ("" when the primary call failed: see ``primary_ok``).
    answer: str
    primary_model: str
    #: The candidates whose results are expected (the shadow role's plan for the request).
    expected: frozenset[str]
    primary_ok: bool = True


@dataclass
class _Entry:
    since: float
    request: PendingRequest | None = None
    results: dict[str, ShadowResult] = field(default_factory=dict)
    paired: set[str] = field(default_factory=set)


@dataclass
class PendingCounters:
    """What happened to waiting entries."""

    expired: int = 0
    evicted: int = 0
    duplicates: int = 0


class PendingPairs:
    """Requests waiting for their shadow results, and results waiting for their request."""

    def __init__(self, ttl_s: float, limit: int) -> None:
        self.ttl_s = ttl_s
        self.limit = limit
        self.counters = PendingCounters()
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add_request(self, request: PendingRequest, now: float) -> list[ShadowResult]:
        """Hold ``request``; return the results that were waiting for it (now paired)."""
        self.expire(now)
        entry = self._entries.get(request.request_id)
        if entry is None:
            entry = self._new(request.request_id, now)
        elif entry.request is not None:
            self.counters.duplicates += 1
            return []
        entry.request = request
        ready = [entry.results.pop(c) for c in sorted(entry.results)]
        entry.paired.update(r.candidate for r in ready)
        self._close_if_done(request.request_id, entry)
        return ready

    def add_result(self, result: ShadowResult, now: float) -> PendingRequest | None:
        """Pair ``result`` with its waiting request (returned), or hold it until it comes."""
        self.expire(now)
        entry = self._entries.get(result.request_id)
        if entry is None:
            entry = self._new(result.request_id, now)
        if result.candidate in entry.paired or result.candidate in entry.results:
            self.counters.duplicates += 1
            return None
        if entry.request is None:
            entry.results[result.candidate] = result
            return None
        entry.paired.add(result.candidate)
        request = entry.request
        self._close_if_done(result.request_id, entry)
        return request

    def expire(self, now: float) -> int:
        """Drop entries older than ``ttl_s``; return how many."""
        dropped = 0
        while self._entries:
            key, oldest = next(iter(self._entries.items()))
            if now - oldest.since < self.ttl_s:
                break
            del self._entries[key]
            dropped += 1
        self.counters.expired += dropped
        return dropped

    def _new(self, request_id: str, now: float) -> _Entry:
        entry = _Entry(since=now)
        self._entries[request_id] = entry
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)
            self.counters.evicted += 1
        return entry

    def _close_if_done(self, request_id: str, entry: _Entry) -> None:
        if entry.request is not None and entry.request.expected <= entry.paired:
            self._entries.pop(request_id, None)
