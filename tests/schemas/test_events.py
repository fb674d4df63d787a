"""Event models: strict validation with clear errors, and lossless JSON."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas import (
    EVENT_TYPES,
    EventValidationError,
    FeedbackEvent,
    RequestEvent,
    RoutingFlags,
)
from shadowlab.testing import sample_request
from tests.samples import sample_events


def _request_data(**changes: Any) -> dict[str, Any]:
    data = json.loads(sample_request().to_json())
    data.update(changes)
    return data


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_every_event_type_round_trips_through_json(name: str) -> None:
    event = sample_events()[name]
    assert type(event).from_json(event.to_json()) == event
    assert json.loads(event.to_json())["schema_version"] == 1


def test_every_event_type_has_a_sample() -> None:
    assert set(sample_events()) == set(EVENT_TYPES)


def test_naive_datetime_is_refused_naming_the_field() -> None:
    with pytest.raises(EventValidationError) as info:
        RequestEvent.from_json(json.dumps(_request_data(event_time="2026-11-20T12:00:00")))
    assert info.value.fields == ["event_time"]
    assert "timezone" in str(info.value)


def test_negative_latency_is_refused_naming_the_field() -> None:
    with pytest.raises(EventValidationError, match=r"latency_ms: Input should be greater"):
        RequestEvent.parse(_request_data(latency_ms=-1.0))


def test_nested_field_is_named_with_its_path() -> None:
    data = _request_data()
    data["request"]["messages"][1]["role"] = "robot"
    with pytest.raises(EventValidationError) as info:
        RequestEvent.parse(data)
    assert info.value.fields == ["request.messages[1].role"]
    assert info.value.event_type == "RequestEvent"


def test_strict_types_refuse_strings_for_numbers() -> None:
    with pytest.raises(EventValidationError) as info:
        RequestEvent.from_json(json.dumps(_request_data(prompt_tokens="57")))
    assert info.value.fields == ["prompt_tokens"]


def test_unknown_field_is_refused() -> None:
    with pytest.raises(EventValidationError) as info:
        RequestEvent.parse(_request_data(latency="fast"))
    assert info.value.fields == ["latency"]


def test_unknown_schema_version_is_refused() -> None:
    with pytest.raises(EventValidationError) as info:
        RequestEvent.parse(_request_data(schema_version=2))
    assert info.value.fields == ["schema_version"]


def test_malformed_json_is_an_event_validation_error() -> None:
    with pytest.raises(EventValidationError, match="invalid RequestEvent"):
        RequestEvent.from_json(b'{"request_id": ')


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "error"}, "error_type is required when status is 'error'"),
        ({"status": "ok", "error_type": "Boom"}, "error_type must be empty"),
    ],
)
def test_status_and_error_type_must_agree(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(EventValidationError, match=message):
        RequestEvent.parse(_request_data(**changes))


def test_error_status_with_type_is_valid() -> None:
    event = RequestEvent.parse(
        _request_data(status="timeout", error_type="APITimeoutError", answer=None)
    )
    assert event.status == "timeout"


def test_feedback_needs_a_verdict_and_a_valid_csat() -> None:
    base = json.loads(sample_events()["FeedbackEvent"].to_json())
    with pytest.raises(EventValidationError, match="csat"):
        FeedbackEvent.parse({**base, "csat": None, "thumbs": None})
    with pytest.raises(EventValidationError) as info:
        FeedbackEvent.parse({**base, "csat": 6})
    assert info.value.fields == ["csat"]
    assert FeedbackEvent.parse({**base, "csat": None}).thumbs == "up"


def test_flags_refuse_canary_equal_to_primary_and_weight_without_canary() -> None:
    base = json.loads(sample_events()["RoutingFlags"].to_json())
    with pytest.raises(EventValidationError, match="canary must differ from primary"):
        RoutingFlags.parse({**base, "canary": base["primary"]})
    with pytest.raises(EventValidationError, match="needs a canary model"):
        RoutingFlags.parse({**base, "canary": None})
    with pytest.raises(EventValidationError) as info:
        RoutingFlags.parse({**base, "canary_weight_bp": 10_001})
    assert info.value.fields == ["canary_weight_bp"]


def test_events_are_frozen() -> None:
    event = sample_request()
    with pytest.raises(ValueError, match="frozen"):
        event.latency_ms = 1.0  # type: ignore[misc]


_finite = st.floats(min_value=0, max_value=3_600_000, allow_nan=False, allow_infinity=False)


@given(
    latency=_finite,
    ttft=st.none() | _finite,
    tokens=st.integers(min_value=0, max_value=10_000_000),
    answer=st.none() | st.text(max_size=200),
    when=st.datetimes(
        min_value=dt.datetime(2000, 1, 1),
        max_value=dt.datetime(2100, 1, 1),
        timezones=st.just(dt.UTC),
    ),
    metadata=st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3),
)
def test_request_json_round_trip_is_lossless(
    latency: float,
    ttft: float | None,
    tokens: int,
    answer: str | None,
    when: dt.datetime,
    metadata: dict[str, str],
) -> None:
    event = sample_request(
        latency_ms=latency,
        ttft_ms=ttft,
        completion_tokens=tokens,
        answer=answer,
        event_time=when,
        metadata=metadata,
    )
    assert RequestEvent.from_json(event.to_json()) == event


def test_unknown_usage_is_null_never_a_number() -> None:
    unknown = {"prompt_tokens": None, "completion_tokens": None, "cost_usd": None}
    event = sample_request(usage_known=False, **unknown)
    assert (event.prompt_tokens, event.cost_usd, event.usage_known) == (None, None, False)
    assert RequestEvent.from_json(event.to_json()) == event
    with pytest.raises(EventValidationError, match="must be null when usage_known is false"):
        sample_request(usage_known=False, prompt_tokens=0, completion_tokens=None, cost_usd=None)
    with pytest.raises(EventValidationError, match="required when usage_known is true"):
        sample_request(**unknown)
