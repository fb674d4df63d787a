"""Sampling and budgets of the shadow role: pure, with the clock passed in."""

from __future__ import annotations

import pytest

from processors.budget import RecentPairs, SpendWindow, TokenBucket, sampled


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
