"""Outputs a role writes stay under Kafka's message limit, and say when they were cut."""

from __future__ import annotations

from confluent_kafka import Producer

from shadowlab.core.kafka import produce_or_report
from shadowlab.core.limits import CUT_MARKER, cut_text
from shadowlab.core.settings import ShadowSettings

KAFKA_MESSAGE_LIMIT = 1_000_000  # librdkafka's message.max.bytes default


def test_a_long_text_keeps_its_head_and_says_its_length() -> None:
    text = "€" * 300_000
    cut = cut_text(text, 100_000)
    assert cut == "€" * 100_000 + CUT_MARKER.format(length=300_000)
    assert cut_text("short", 100_000) == "short"
    assert cut_text(None, 10) is None


def test_the_default_answer_limit_fits_a_kafka_message_at_four_bytes_a_character() -> None:
    longest = cut_text("\U0001f600" * 1_000_000, ShadowSettings().max_answer_chars)
    assert longest is not None
    assert len(longest.encode()) < KAFKA_MESSAGE_LIMIT // 2


def test_a_message_the_client_refuses_is_reported_not_raised() -> None:
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "message.max.bytes": "1000"})
    assert not produce_or_report(producer, "llm.shadow", b"x" * 5000, "r1", what="a result")
    assert produce_or_report(producer, "llm.shadow", b"x", "r1", what="a result")
