"""Sampling and budgets of the shadow role: pure, with the clock passed in."""

from __future__ import annotations

import pytest

from processors.budget import RateLimit, RecentPairs, SpendWindow, TokenBucket, sampled
from processors.shadow import _spent, arrival_offsets
from shadowlab.core.openai_shapes import usage_fields
from shadowlab.core.settings import ModelEndpoint
from shadowlab.testing import sample_request, sample_shadow


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


def test_a_replay_of_unknown_usage_is_spent_at_its_worst_case() -> None:
    endpoint = ModelEndpoint(name="m", base_url="http://x", price_input_per_1k=1.0,
                             price_output_per_1k=2.0, max_output_tokens=1000)  # fmt: skip
    request = sample_request(request={"messages": [{"role": "user", "content": "x" * 400}]})
    known = sample_shadow(prompt_tokens=100, completion_tokens=10, cost_usd=0.12)
    unknown = sample_shadow(prompt_tokens=None, completion_tokens=None, cost_usd=None,
                            usage_known=False)  # fmt: skip
    assert _spent(known, endpoint, request) == 0.12
    assert _spent(unknown, endpoint, request) == pytest.approx((100 * 1 + 1000 * 2) / 1000)
    limited = sample_request(
        request={"messages": [{"role": "user", "content": "x" * 400}], "max_tokens": 50}
    )
    assert _spent(unknown, endpoint, limited) == pytest.approx((100 + 50 * 2) / 1000)


def test_usage_is_unknown_only_for_a_call_that_came_back_without_it() -> None:
    def price(p: int, c: int) -> float:
        return p + c

    assert usage_fields(3, 4, price, came_back=True) == {
        "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 7, "usage_known": True,
    }  # fmt: skip
    assert usage_fields(None, None, price, came_back=True)["usage_known"] is False
    assert usage_fields(None, None, price, came_back=False) == {
        "prompt_tokens": 0, "completion_tokens": 0, "cost_usd": 0, "usage_known": True,
    }  # fmt: skip
    assert usage_fields(3, 4, None, came_back=True)["cost_usd"] == 0.0  # no price: $0
    # a gateway's zeros for a usage it never got (LiteLLM's) are no count
    assert usage_fields(0, 0, price, came_back=True)["usage_known"] is False
    assert usage_fields(0, 0, price, came_back=False)["usage_known"] is True
