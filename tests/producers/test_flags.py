"""Flags changes: pure functions, validated, each exactly one version ahead."""

from __future__ import annotations

import datetime as dt

import pytest

from producers import clear_override, rollback, set_flags, weight_bp
from shadowlab.core.errors import InvalidFlagsChangeError, UnknownRouteError

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def _set(current=None, **kw):  # type: ignore[no-untyped-def]
    args = {
        "route": "faq",
        "primary": "gpt-4",
        "canary": "gpt-4o",
        "canary_weight_bp": 500,
        "actor": "alice",
        "reason": "start",
        "now": NOW,
    }
    args.update(kw)
    return set_flags(current, **args)


def test_first_set_is_version_1_in_canary_stage() -> None:
    f = _set()
    assert (f.version, f.stage, f.canary_weight_bp, f.changed_by) == (1, "canary", 500, "alice")


def test_stage_follows_canary_and_weight() -> None:
    assert _set(canary=None, canary_weight_bp=0).stage == "promoted"
    assert _set(canary_weight_bp=0).stage == "shadow"


def test_same_canary_keeps_its_salt_a_new_canary_gets_a_new_one() -> None:
    first = _set()
    grown = _set(first, canary_weight_bp=2500)
    assert grown.salt == first.salt
    assert grown.version == 2
    other = _set(grown, canary="ft-model")
    assert other.salt != grown.salt


def test_rollback_is_one_write_override_primary_weight_zero() -> None:
    current = _set(canary_weight_bp=2500)
    rolled = rollback(current, route="faq", actor="bob", reason="p95 +30%", now=NOW)
    assert rolled.override == "gpt-4"
    assert rolled.canary_weight_bp == 0
    assert rolled.stage == "rolled_back"
    assert rolled.version == current.version + 1
    assert (rolled.changed_by, rolled.reason) == ("bob", "p95 +30%")


def test_rollback_needs_a_route_with_flags_and_a_reason() -> None:
    with pytest.raises(UnknownRouteError, match="has no flags yet"):
        rollback(None, route="faq", actor="bob", reason="x", now=NOW)
    with pytest.raises(InvalidFlagsChangeError, match="needs a reason"):
        rollback(_set(), route="faq", actor="bob", reason=" ", now=NOW)


def test_clear_override() -> None:
    rolled = rollback(_set(), route="faq", actor="bob", reason="x", now=NOW)
    cleared = clear_override(rolled, route="faq", actor="bob", reason="fixed", now=NOW)
    assert cleared.override is None
    assert cleared.version == rolled.version + 1
    with pytest.raises(InvalidFlagsChangeError, match="no override to clear"):
        clear_override(cleared, route="faq", actor="bob", reason="", now=NOW)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"canary": "gpt-4"}, "canary and primary are the same model"),
        ({"canary": None}, "a canary weight needs a canary model"),
    ],
)
def test_bad_changes_are_refused_with_what_to_do(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidFlagsChangeError, match=message):
        _set(**kw)


@pytest.mark.parametrize("pct", [-1, 100.5, 1000])
def test_weight_outside_0_100_is_refused(pct: float) -> None:
    with pytest.raises(InvalidFlagsChangeError, match="percentage from 0 to 100"):
        weight_bp(pct)


def test_weight_percent_to_basis_points() -> None:
    assert [weight_bp(p) for p in (0, 1, 5, 25, 50, 100, 0.5)] == [
        0,
        100,
        500,
        2500,
        5000,
        10000,
        50,
    ]
