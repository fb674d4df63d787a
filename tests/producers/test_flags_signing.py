"""Only flags written by the controller or an operator are installed: signatures, version steps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from confluent_kafka import Producer
from pydantic import SecretStr

from producers import FlagsClient, LiveRouter, rollback, set_flags
from schemas import RoutingFlags
from shadowlab.core.flags_signing import SIGNATURE_HEADER, FlagsKeys, key_id
from shadowlab.testing import wait_until

NOW = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
KEY = SecretStr("k" * 32)
OLD_KEY = SecretStr("o" * 32)
FORGED_VERSION = 2**63 - 1


def _first() -> RoutingFlags:
    return set_flags(None, route="faq", primary="gpt-4", canary="gpt-4o", canary_weight_bp=500,
                     actor="t", reason="", now=NOW)  # fmt: skip


def _forged(version: int = FORGED_VERSION) -> RoutingFlags:
    return _first().model_copy(update={"version": version, "override": "evil"})


def _produce(
    kafka: dict[str, str], topic: str, flags: RoutingFlags, headers: object = None
) -> None:
    producer = Producer({**kafka, "linger.ms": "0"})
    producer.produce(topic, key=flags.route, value=flags.to_json(), headers=headers)  # type: ignore[arg-type]
    assert producer.flush(10) == 0


def test_a_signature_checks_the_key_the_route_and_the_value() -> None:
    keys = FlagsKeys.of(KEY)
    value = _first().to_json()
    headers = keys.sign(b"faq", value)
    assert keys.refusal(b"faq", value, headers) is None
    assert keys.refusal(b"faq", value.replace(b"gpt-4o", b"evil!!"), headers) == "bad signature"
    assert keys.refusal(b"other", value, headers) == "bad signature"
    assert keys.refusal(b"faq", value, []) == "unsigned"
    stranger = FlagsKeys.of(SecretStr("s" * 32)).sign(b"faq", value)
    assert keys.refusal(b"faq", value, stranger) == (
        f"signed with an unknown key {key_id(SecretStr('s' * 32))!r}"
    )
    assert FlagsKeys().refusal(b"faq", value, []) is None  # no keys: nothing is required


def test_a_rotation_accepts_the_old_key_while_signing_with_the_new() -> None:
    value = _first().to_json()
    old = FlagsKeys.of(OLD_KEY).sign(b"faq", value)
    rotating = FlagsKeys.of(KEY, [OLD_KEY])
    assert rotating.refusal(b"faq", value, old) is None
    assert rotating.sign(b"faq", value)[0][1].startswith(f"v1:{key_id(KEY)}:".encode())
    assert rotating.sign(b"faq", value)[0][0] == SIGNATURE_HEADER


def test_forged_flags_are_refused_and_routing_is_never_lost(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("routing.flags")
    keys = FlagsKeys.of(KEY)
    with FlagsClient(kafka, topic, keys=keys) as client, LiveRouter(kafka, topic, keys=keys) as r:
        first = client.publish(_first())
        wait_until(lambda: r.version("faq") == 1)
        _produce(kafka, topic, _forged())  # unsigned
        stranger = FlagsKeys.of(SecretStr("s" * 32)).sign(b"faq", _forged().to_json())
        _produce(kafka, topic, _forged(), stranger)  # signed with a key nobody accepts
        wait_until(lambda: r.reader.rejected == 2 and client._reader.rejected == 2)
        assert r.flags("faq") == client.current("faq") == first
        # the operator's rollback still goes through
        done = client.publish(rollback(client.current("faq"), route="faq", actor="oncall",
                                       reason="drill", now=NOW))  # fmt: skip
        wait_until(lambda: r.version("faq") == 2)
        assert r.choose("faq", "user-1").model == "gpt-4" == done.override


def test_without_keys_a_version_jump_is_still_refused(
    kafka: dict[str, str], topic_factory: Callable[..., str]
) -> None:
    topic = topic_factory("routing.flags")
    with FlagsClient(kafka, topic) as client, LiveRouter(kafka, topic) as router:
        first = client.publish(_first())
        wait_until(lambda: router.version("faq") == 1)
        _produce(kafka, topic, _forged())
        wait_until(lambda: router.reader.rejected == 1)
        assert router.flags("faq") == first
        change = rollback(client.current("faq"), route="faq", actor="t", reason="x", now=NOW)
        client.publish(change)
        wait_until(lambda: router.version("faq") == 2)
