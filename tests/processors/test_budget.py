"""Sampling and budgets of the shadow role: pure, with the clock passed in."""

from __future__ import annotations

import pytest

from processors.budget import RateLimit, RecentPairs, SpendWindow, TokenBucket, sampled
from processors.shadow import arrival_offsets


def test_sampling_is_deterministic_and_at_the_rate() -> None:
    ids = [f"r{i}" for i in range(20_000)]
    first = [sampled(i, "gpt-4o", 0.25) for i in ids]
    assert first == [sampled(i, "gpt-4o", 0.25) for i in ids]
    assert sum(first) / len(ids) == pytest.approx(0.25, abs=0.01)
    assert all(sampled(i, "m", 1.0) for i in ids[:100])
    assert not any(sampled(i, "m", 0.0) for i in ids[:100])


def test_token_bucket_caps_the_rate() -> None:
    bucket = TokenBucket(rate=5)
    taken = sum(bucket.take(now=t / 100) for t in range(1000))  # 10 s in 10 ms steps
    assert 50 <= taken <= 56  # 5/s for 10 s, plus the initial burst


def test_spend_window_forgets_after_an_hour() -> None:
    window = SpendWindow(cap_usd=1.0)
    window.add(0.0, 0.6)
    window.add(10.0, 0.5)
    assert not window.allows(20.0)
    assert window.spent(3601.0) == pytest.approx(0.5)
    assert window.allows(3611.0)


def test_recent_pairs_forget_the_oldest() -> None:
    pairs = RecentPairs(2)
    for p in [("a", "m"), ("b", "m"), ("c", "m")]:
        pairs.add(p)
    assert ("a", "m") not in pairs
    assert ("c", "m") in pairs


def test_a_rate_limit_queues_callers_in_order_instead_of_refusing_them() -> None:
    limit = RateLimit(per_minute=600)  # 10 a second, at most one second's worth at once
    waits = [limit.reserve(0.0) for _ in range(13)]
    assert waits[:10] == [0.0] * 10
    assert waits[10:] == pytest.approx([0.1, 0.2, 0.3])
    assert limit.reserve(10.0) == 0.0  # refilled, but never past one second's worth
    assert [limit.reserve(10.0) for _ in range(10)][-1] == pytest.approx(0.1)
    tokens = RateLimit(per_minute=60_000)  # 1,000 tokens a second
    assert tokens.reserve(0.0, 2_500) == 0.0  # one call bigger than a second's worth goes
    assert tokens.reserve(0.0, 500) == pytest.approx(0.5)


class _Message:
    def __init__(self, at: float | None) -> None:
        self.at = at

    def timestamp(self) -> tuple[int, int]:
        return (0, -1) if self.at is None else (1, round(self.at * 1000))


def test_live_requests_are_replayed_at_their_arrival_offsets_a_backlog_at_once() -> None:
    live = [_Message(t) for t in (100.0, 100.5, 102.0)]
    assert arrival_offsets(live, 103.0, 30) == pytest.approx([0.0, 0.5, 2.0])  # type: ignore[arg-type]
    assert arrival_offsets(live, 200.0, 30) == [0.0, 0.0, 0.0]  # type: ignore[arg-type]
    assert arrival_offsets(live, 103.0, 0) == [0.0, 0.0, 0.0]  # type: ignore[arg-type]
    unknown = [_Message(100.0), _Message(None)]
    assert arrival_offsets(unknown, 101.0, 30) == [0.0, 0.0]  # type: ignore[arg-type]
