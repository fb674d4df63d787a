"""JSON Schema export: what a service in another language validates its events against."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from schemas import EVENT_TYPES, EventValidationError, json_schemas
from tests.samples import sample_events


@functools.cache
def _validator(name: str) -> Draft202012Validator:
    schema = json_schemas()[name]
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


@pytest.mark.parametrize("name", sorted(EVENT_TYPES))
def test_exported_schema_accepts_a_valid_event(name: str) -> None:
    event = json.loads(sample_events()[name].to_json())
    assert list(_validator(name).iter_errors(event)) == []


def test_exported_schema_rejects_malformed_events() -> None:
    validator = _validator("RequestEvent")
    event = json.loads(sample_events()["RequestEvent"].to_json())
    for bad, field in [
        ({k: v for k, v in event.items() if k != "request_id"}, "request_id"),
        ({**event, "latency_ms": -5}, "latency_ms"),
        ({**event, "arm": "sideways"}, "arm"),
        ({**event, "unexpected": 1}, "unexpected"),
        ({**event, "request": {"messages": []}}, "messages"),
    ]:
        errors = list(validator.iter_errors(bad))
        assert errors, f"schema accepted an event with a bad {field}"
        assert any(field in (e.message + str(list(e.absolute_path))) for e in errors)


def test_cli_exports_one_file_per_event_type(tmp_path: Path) -> None:
    out = tmp_path / "schemas"
    subprocess.run(
        [sys.executable, "-m", "shadowlab", "schemas", "export", str(out)],
        check=True,
        capture_output=True,
    )
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(f"{name}.schema.json" for name in EVENT_TYPES)
    written = json.loads((out / "RequestEvent.schema.json").read_text())
    assert written == json_schemas()["RequestEvent"]


HOSTILE_VALUES = [
    None, "", " ", "ok", "error", "timeout", "missing", "joined", "x" * 300, 0, -1, 1, 6, 2.5,
    10**20, True, [], {}, ["a"], {"type": "json_object"},
    "2026-06-01T12:00:00", "2026-06-01T12:00:00Z", "2026-06-01T12:00:00+02:00",
    "9999-12-31T23:59:59Z", "1899-12-31T23:59:59Z", "2026-06-01", "2026-13-45T99:99:99Z",
    "faithfulness", "pairwise", "primary", "candidate", "tie", "canary", "up", "gpt-4",
]  # fmt: skip


def _accepted_by_model(name: str, document: dict[str, object]) -> bool:
    try:
        EVENT_TYPES[name].parse(document)
    except EventValidationError:
        return False
    return True


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(EVENT_TYPES)),
    changes=st.lists(
        st.tuples(st.integers(0, 200), st.sampled_from(HOSTILE_VALUES)), min_size=1, max_size=3
    ),
    drops=st.lists(st.integers(0, 200), max_size=2),
)
def test_what_the_exported_schema_accepts_the_models_accept(
    name: str, changes: list[tuple[int, object]], drops: list[int]
) -> None:
    # a careless producer in another language: fields set to odd values or left out; every
    # document its validator lets through must be an event our roles take, not a dead letter
    document = json.loads(sample_events()[name].to_json())
    fields = sorted(document)
    for index, value in changes:
        document[fields[index % len(fields)]] = value
    for index in drops:
        document.pop(fields[index % len(fields)], None)
    if list(_validator(name).iter_errors(document)):
        return
    assert _accepted_by_model(name, document), document


@pytest.mark.parametrize(
    ("name", "change"),
    [
        ("RequestEvent", {"event_time": "2026-06-01T12:00:00"}),  # no time zone
        ("RequestEvent", {"event_time": "9999-12-31T23:59:59Z"}),  # past DateTime64's range
        ("RequestEvent", {"status": "ok", "error_type": "APIError"}),
        ("RequestEvent", {"status": "timeout", "error_type": None}),
        ("ShadowResult", {"status": "error", "error_type": ""}),
        ("FeedbackEvent", {"csat": None, "thumbs": None}),
        ("Comparison", {"status": "joined", "candidate_status": None}),
        ("RoutingFlags", {"canary_weight_bp": 500, "canary": None}),
    ],
)
def test_both_refuse_what_the_models_refuse(name: str, change: dict[str, object]) -> None:
    document = {**json.loads(sample_events()[name].to_json()), **change}
    assert list(_validator(name).iter_errors(document)), "the schema accepted it"
    assert not _accepted_by_model(name, document)
