"""JSON Schema export: what a service in another language validates its events against."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from schemas import EVENT_TYPES, json_schemas
from tests.samples import sample_events


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
