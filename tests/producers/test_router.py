"""The Router: sticky, monotone canary buckets, override, versions; pure and in-memory."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from producers import BUCKETS, Router, bucket
from schemas import RoutingFlags
from shadowlab.core.errors import UnknownRouteError

T0 = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
KEYS = [f"user-{i}" for i in range(100_000)]


def flags(**changes: Any) -> RoutingFlags:
    data: dict[str, Any] = {
        "route": "faq",
        "version": 1,
        "stage": "canary",
        "primary": "gpt-4",
        "canary": "gpt-4o",
        "canary_weight_bp": 500,
        "salt": "rollout-1",
        "changed_at": T0,
        "changed_by": "test",
    }
    data.update(changes)
    return RoutingFlags.parse(data)


def test_bucket_is_stable_across_processes_and_versions() -> None:
    # fixed values: a change here would reshuffle every user of every running rollout
    assert [bucket("rollout-1", k) for k in ("alice", "bob", "carol")] == [5089, 353, 1972]
    assert bucket("s", "k") == 4775
    assert all(0 <= bucket("s", k) < BUCKETS for k in KEYS[:1000])


def test_growing_weight_never_moves_a_key_out_of_the_canary() -> None:
    router = Router([flags(canary_weight_bp=500)])
    at_5 = {k for k in KEYS if router.choose("faq", k).arm == "canary"}
    router.apply(flags(version=2, canary_weight_bp=2500))
    at_25 = {k for k in KEYS if router.choose("faq", k).arm == "canary"}
    assert at_5 <= at_25
    assert abs(len(at_5) / len(KEYS) - 0.05) <= 0.005
    assert abs(len(at_25) / len(KEYS) - 0.25) <= 0.005


def test_same_key_same_model_every_time() -> None:
    router = Router([flags(canary_weight_bp=5000)])
    first = [router.choose("faq", k).model for k in KEYS[:2000]]
    assert first == [router.choose("faq", k).model for k in KEYS[:2000]]


def test_a_new_salt_draws_other_users() -> None:
    a = Router([flags(salt="rollout-1", canary_weight_bp=1000)])
    b = Router([flags(salt="rollout-2", canary_weight_bp=1000)])
    in_a = {k for k in KEYS[:20_000] if a.choose("faq", k).arm == "canary"}
    in_b = {k for k in KEYS[:20_000] if b.choose("faq", k).arm == "canary"}
    overlap = len(in_a & in_b) / len(in_a)
    assert 0.05 < overlap < 0.15  # independent draws overlap by about the weight (10 %)


def test_no_key_draws_a_random_bucket_at_the_weight() -> None:
    router = Router([flags(canary_weight_bp=2000)])
    share = sum(router.choose("faq").arm == "canary" for _ in range(50_000)) / 50_000
    assert abs(share - 0.20) < 0.01


def test_override_sends_everyone_to_one_model() -> None:
    router = Router([flags(override="gpt-4", canary_weight_bp=0)])
    assignments = {router.choose("faq", k).arm for k in KEYS[:1000]}
    assert assignments == {"override"}
    assert router.choose("faq", "u").model == "gpt-4"


def test_assignment_carries_the_flags_version() -> None:
    router = Router([flags(version=7)])
    assert router.choose("faq", "u").flags_version == 7


def test_unknown_route_is_a_clear_error() -> None:
    router = Router([flags()])
    with pytest.raises(
        UnknownRouteError, match=r"unknown route 'billing' \(routes with flags: faq\)"
    ):
        router.choose("billing", "u")
    with pytest.raises(KeyError):
        router.choose("billing", "u")


def test_older_or_equal_version_never_overwrites_a_newer_one() -> None:
    router = Router([flags(version=5, canary_weight_bp=500)])
    assert not router.apply(flags(version=4, canary_weight_bp=9000))
    assert not router.apply(flags(version=5, canary_weight_bp=9000))
    assert router.flags("faq") == flags(version=5, canary_weight_bp=500)
    assert router.apply(flags(version=6, canary_weight_bp=9000))
    assert router.version("faq") == 6
    assert router.version("other") == 0
