"""Pure pieces of the shadow role: deterministic sampling and per-candidate budgets.

The clock is passed in (seconds, monotonic), so every rule here is tested without sleeping.
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections import deque
from dataclasses import dataclass, field

from schemas import RequestEvent
from shadowlab.core.settings import CandidateConfig

#: Rollout stages in which requests are replayed to candidates.
REPLAY_STAGES = ("shadow", "canary")


def sampled(request_id: str, candidate: str, rate: float) -> bool:
    """Whether ``request_id`` is replayed to ``candidate`` at ``rate`` (0–1).

    Deterministic: a redelivered request gets the same answer, so sampling never changes
    what was already paid for.
    """
    if rate >= 1:
        return True
    if rate <= 0:
        return False
    digest = hashlib.blake2b(f"{candidate}\x1f{request_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def replay_candidates(
    event: RequestEvent, candidates: list[CandidateConfig], stage: str | None
) -> tuple[list[CandidateConfig], collections.Counter[str]]:
    """The candidates ``event`` is meant to be replayed to, and why the others are not.

    The deterministic part of the shadow role's plan (budgets come after it), shared with
    the join, which expects a result from each of these candidates.

    Args:
        event: the production request.
        candidates: the route's configured candidates.
        stage: the route's rollout stage (``None`` when no flags are known: replay).
    """
    skipped: collections.Counter[str] = collections.Counter()
    if not event.replayable:
        skipped["not_replayable"] += len(candidates) or 1
        return [], skipped
    if stage is not None and stage not in REPLAY_STAGES:
        skipped["stage"] += len(candidates)
        return [], skipped
    chosen = []
    for candidate in candidates:
        if candidate.model == event.model:
            skipped["same_model"] += 1
        elif not sampled(event.request_id, candidate.model, candidate.sample_rate):
            skipped["sampled_out"] += 1
        else:
            chosen.append(candidate)
    return chosen, skipped


@dataclass
class TokenBucket:
    """At most ``rate`` takes per second on average, bursts up to ``burst``."""

    rate: float
    burst: float = 0.0
    _tokens: float = field(default=-1.0, repr=False)
    _at: float = field(default=0.0, repr=False)

    def take(self, now: float) -> bool:
        """Take one token at time ``now``; False when the bucket is empty."""
        cap = max(self.burst, self.rate, 1.0)
        if self._tokens < 0:
            self._tokens, self._at = cap, now
        self._tokens = min(cap, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


@dataclass
class RateLimit:
    """A provider's limit of ``per_minute`` units (requests, tokens): how long to wait.

    A reservation takes its units at once and may leave the balance negative: the debt is
    the wait, so concurrent callers queue up in order. The balance refills continuously and
    holds at most one second's worth (at least one call), so a quiet spell never turns into
    a burst the provider would refuse.
    """

    per_minute: float
    _balance: float = field(default=math.nan, repr=False)
    _at: float = field(default=0.0, repr=False)

    def reserve(self, now: float, units: float = 1.0) -> float:
        """Take ``units`` at time ``now``; the seconds to wait before using them (0: now)."""
        rate = self.per_minute / 60.0
        cap = max(rate, units, 1.0)
        if math.isnan(self._balance):
            self._balance, self._at = cap, now
        self._balance = min(cap, self._balance + max(0.0, now - self._at) * rate)
        self._at = max(self._at, now)
        self._balance -= units
        return 0.0 if self._balance >= 0 else -self._balance / rate


@dataclass
class SpendWindow:
    """US dollars spent over the last ``window_s`` seconds, against a cap."""

    cap_usd: float
    window_s: float = 3600.0
    _spends: deque[tuple[float, float]] = field(default_factory=deque, repr=False)
    _total: float = field(default=0.0, repr=False)

    def add(self, now: float, usd: float) -> None:
        """Record a spend at ``now``."""
        self._spends.append((now, usd))
        self._total += usd

    def spent(self, now: float) -> float:
        """Dollars spent within the window ending at ``now``."""
        while self._spends and self._spends[0][0] <= now - self.window_s:
            self._total -= self._spends.popleft()[1]
        return max(0.0, self._total)

    def allows(self, now: float) -> bool:
        """Whether another replay fits under the cap."""
        return self.spent(now) < self.cap_usd


class RecentPairs:
    """The last ``capacity`` (request_id, candidate) pairs replayed: redeliveries are not repaid."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[tuple[str, str]] = deque()
        self._set: set[tuple[str, str]] = set()

    def __contains__(self, pair: object) -> bool:
        return pair in self._set

    def add(self, pair: tuple[str, str]) -> None:
        """Remember ``pair`` (forgetting the oldest past capacity)."""
        if self.capacity <= 0 or pair in self._set:
            return
        self._order.append(pair)
        self._set.add(pair)
        while len(self._order) > self.capacity:
            self._set.discard(self._order.popleft())
