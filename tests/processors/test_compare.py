"""Answer metrics and the join's state machine: pure, no broker."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.compare import (
    CandidateAnswer,
    PrimaryAnswer,
    compare,
    is_refusal,
    json_valid,
    missing,
    schema_valid,
    token_f1,
    tool_calls_digest,
)
from processors.pairing import on_request, on_shadow, on_tick
from schemas import Comparison, ShadowResult
from shadowlab.testing import sample_request, sample_shadow

T0 = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)


def shadow(request_id: str = "r1", candidate: str = "gpt-4o", **over: Any) -> ShadowResult:
    return sample_shadow(request_id=request_id, candidate=candidate, event_time=T0, **over)


def test_token_f1_reference_values() -> None:
    assert token_f1("The warranty lasts two years.", "the warranty lasts TWO years") == 1.0
    # 3 common tokens of 4 and 5: p = 3/4, r = 3/5 → F1 = 2/3
    assert token_f1("warranty lasts two years", "warranty lasts three full years") == (
        pytest.approx(2 / 3)
    )
    assert token_f1("yes", "no") == 0.0
    assert token_f1("", "") == 1.0
    assert token_f1("the", "") == 1.0  # both normalise to nothing
    assert token_f1("a b", "") == 0.0


@given(st.text(max_size=60), st.text(max_size=60))
def test_token_f1_is_symmetric_and_bounded(a: str, b: str) -> None:
    assert token_f1(a, b) == pytest.approx(token_f1(b, a))
    assert 0.0 <= token_f1(a, b) <= 1.0
    assert token_f1(a, a) == 1.0


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ("I'm sorry, but I can't help with that request.", True),
        ("I cannot provide medical advice.", True),
        ("As an AI, I do not have opinions.", True),
        ("The warranty lasts two years.", False),
        ("You can't return opened items, but the warranty lasts two years.", False),
    ],
)
def test_refusals_are_recognised(answer: str, refusal: bool) -> None:
    assert is_refusal(answer) is refusal


def test_json_validity() -> None:
    assert json_valid(' {"years": 2} ')
    assert not json_valid("{years: 2}")


def test_compare_fills_every_metric() -> None:
    request = sample_request(request_id="r1", answer="The warranty lasts two years.")
    c = compare(PrimaryAnswer.of(request), shadow(answer="Two years of warranty, sorry."))
    assert c.status == "joined"
    assert (c.primary_model, c.candidate_model) == ("gpt-4", "gpt-4o")
    assert (c.primary_latency_ms, c.candidate_latency_ms) == (812.5, 900.0)
    assert (c.primary_tokens, c.candidate_tokens) == (66, 68)
    assert c.exact_match is False
    # {warranty, lasts, two, years} vs {two, years, of, warranty, sorry}: 3 common → F1 2/3
    assert c.similarity == pytest.approx(2 / 3)
    assert c.length_ratio == pytest.approx(len("Two years of warranty, sorry.") / 29)
    assert (c.primary_refusal, c.candidate_refusal) == (False, False)
    assert c.primary_json_valid is None  # no JSON response_format was asked
    assert Comparison.from_json(c.to_json()) == c


def test_compare_checks_json_only_when_asked() -> None:
    request = sample_request(
        answer='{"years": 2}',
        request={
            "messages": [{"role": "user", "content": "warranty?"}],
            "response_format": {"type": "json_object"},
        },
    )
    c = compare(PrimaryAnswer.of(request), shadow(request.request_id, answer="two years"))
    assert (c.primary_json_valid, c.candidate_json_valid) == (True, False)


def test_a_failed_candidate_has_no_answer_metrics() -> None:
    request = sample_request()
    failed = shadow(request.request_id, answer=None, status="timeout", error_type="APITimeout")
    c = compare(PrimaryAnswer.of(request), failed)
    assert c.candidate_status == "timeout"
    assert (c.exact_match, c.similarity, c.length_ratio, c.candidate_refusal) == (
        None,
        None,
        None,
        None,
    )


def test_missing_has_no_candidate_fields() -> None:
    c = missing(PrimaryAnswer.of(sample_request()), "gpt-4o")
    assert (c.status, c.candidate_status, c.candidate_latency_ms) == ("missing", None, None)


# --- the join's state machine ------------------------------------------------------------


def test_request_then_results_join_and_close() -> None:
    request = sample_request(request_id="r1")
    step = on_request(None, request, ["gpt-4o", "ft-1"], now=0.0)
    assert (step.outcome, step.comparisons) == ("waiting", [])
    step = on_shadow(step.entry, shadow("r1", "gpt-4o"), 1.0)
    assert step.outcome == "joined"
    assert [c.candidate_model for c in step.comparisons] == ["gpt-4o"]
    step = on_shadow(step.entry, shadow("r1", "ft-1"), 2)
    assert step.entry is not None
    assert step.entry["closed"] == 2  # every expected candidate joined


def test_result_before_request_is_held_then_joined() -> None:
    held = on_shadow(None, shadow("r1"), now=0.0)
    assert (held.outcome, held.comparisons) == ("held", [])
    step = on_request(held.entry, sample_request(request_id="r1"), ["gpt-4o"], now=1.0)
    assert step.outcome == "joined"
    assert step.comparisons[0].status == "joined"
    assert step.entry is not None
    assert "closed" in step.entry


def test_a_result_for_a_request_closed_without_its_candidate_is_unexpected_not_a_duplicate() -> (
    None
):
    # the join read the request after the stage had moved on: it expected no candidate
    step = on_request(None, sample_request(request_id="r1"), [], now=0.0)
    assert step.entry is not None
    assert "closed" in step.entry
    result = on_shadow(step.entry, shadow("r1"), 1.0)
    assert (result.outcome, result.comparisons) == ("unexpected", [])


def test_window_emits_missing_once_and_a_late_result_joins_then() -> None:
    step = on_request(None, sample_request(request_id="r1"), ["gpt-4o"], now=0.0)
    assert step.entry is not None
    assert on_tick(step.entry, 59.0, 60, 600, 600).comparisons == []
    closed = on_tick(step.entry, 60.0, 60, 600, 600)
    assert [c.status for c in closed.comparisons] == ["missing"]
    assert closed.entry is not None
    assert on_tick(closed.entry, 61.0, 60, 600, 600).comparisons == []
    late = on_shadow(closed.entry, shadow("r1"), 70.0)
    assert late.outcome == "late"
    assert [(c.status, c.candidate_model) for c in late.comparisons] == [("joined", "gpt-4o")]
    assert late.entry is not None
    assert late.entry["missing"] == []
    again = on_shadow(late.entry, shadow("r1"), 71.0)  # a redelivered late result
    assert (again.outcome, again.comparisons) == ("duplicate", [])
    assert on_tick(late.entry, 661.0, 60, 600, 600).entry is None  # forgotten after retention


def test_redelivered_events_change_nothing() -> None:
    request = sample_request(request_id="r1")
    step = on_request(None, request, ["gpt-4o"], now=0.0)
    step = on_shadow(step.entry, shadow("r1"), 1.0)
    assert len(step.comparisons) == 1
    again = on_shadow(step.entry, shadow("r1"), 2.0)
    assert (again.outcome, again.comparisons) == ("duplicate", [])
    again = on_request(step.entry, request, ["gpt-4o"], now=3.0)
    assert (again.outcome, again.comparisons) == ("duplicate", [])
    held = on_shadow(None, shadow("r2"), 0.0)
    assert on_shadow(held.entry, shadow("r2"), 1.0).outcome == "duplicate"


def test_a_request_nobody_shadows_closes_at_once() -> None:
    step = on_request(None, sample_request(), [], now=0.0)
    assert (step.outcome, step.comparisons) == ("closed", [])


def test_orphan_results_are_dropped_after_their_window() -> None:
    held = on_shadow(None, shadow("r9"), now=0.0)
    assert held.entry is not None
    assert on_tick(held.entry, 599.0, 60, 600, 600).entry == held.entry
    assert on_tick(held.entry, 600.0, 60, 600, 600).outcome == "orphan"


def test_time_the_join_was_down_does_not_count_against_the_window() -> None:
    step = on_request(None, sample_request(request_id="r1"), ["gpt-4o"], now=0.0)
    assert step.entry is not None
    restarted_at = 100.0  # restored from the changelog after 100 s down
    assert on_tick(step.entry, 101.0, 60, 600, 600, since=restarted_at).comparisons == []
    late = on_tick(step.entry, 160.0, 60, 600, 600, since=restarted_at)
    assert [c.status for c in late.comparisons] == ["missing"]


def test_a_deeply_nested_answer_is_invalid_json_not_a_crash() -> None:
    assert not json_valid("[" * 100_000 + "]" * 100_000)


def test_entries_written_before_answer_digests_still_join() -> None:
    """A join upgraded with entries in its table's changelog reads them as digests."""
    request = sample_request(request_id="old-1", answer="Two years.")
    primary = PrimaryAnswer.of(request).model_dump(mode="json")
    old_open = {"seen": 0.0, "primary": {**primary, "answer": "Two years."},
                "expected": ["gpt-4o"], "done": []}  # fmt: skip
    step = on_shadow(old_open, shadow("old-1", answer="Two years."), 1.0)
    (joined,) = step.comparisons
    assert (joined.exact_match, joined.similarity) == (True, 1.0)
    old_held = {
        "seen": 0.0,
        "held": {"gpt-4o": shadow("old-1", answer="two years").to_json().decode()},
    }
    (late,) = on_request(old_held, request, ["gpt-4o"], 2.0).comparisons
    assert late.status == "joined"
    assert late.similarity == 1.0


def _call(name: str, arguments: str, call_id: str = "call_1") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def test_tool_calls_agree_on_names_order_and_arguments_as_json() -> None:
    primary = [_call("lookup", '{"q": "warranty", "n": 2}')]
    same = [_call("lookup", '{"n":2,"q":"warranty"}', call_id="other-id")]  # ids do not count
    assert tool_calls_digest(primary) == tool_calls_digest(same)
    assert tool_calls_digest(primary) != tool_calls_digest([_call("lookup", '{"q": "returns"}')])
    assert tool_calls_digest(primary) != tool_calls_digest([_call("search", '{"q": "warranty"}')])
    two = [_call("a", "{}"), _call("b", "{}")]
    assert tool_calls_digest(two) != tool_calls_digest(two[::-1])  # order counts
    assert tool_calls_digest([_call("a", "not json")]) == tool_calls_digest(
        [_call("a", "not json")]
    )
    assert tool_calls_digest(None) is None
    assert tool_calls_digest([]) is None


def test_the_comparison_says_whether_the_tool_calls_match() -> None:
    request = sample_request(answer=None, tool_calls=[_call("lookup", '{"q": "w"}')])
    agree = shadow(request.request_id, answer="", tool_calls=[_call("lookup", '{ "q":"w" }', "x")])
    differ = shadow(request.request_id, answer="", tool_calls=[_call("lookup", '{"q": "v"}')])
    text = shadow(request.request_id, answer="Two years.")  # answered instead of calling
    primary = PrimaryAnswer.of(request)
    assert compare(primary, agree).tool_calls_match is True
    assert compare(primary, differ).tool_calls_match is False
    assert compare(primary, text).tool_calls_match is False
    plain = sample_request(answer="Two years.")
    assert compare(PrimaryAnswer.of(plain), shadow(plain.request_id)).tool_calls_match is None


SCHEMA = {
    "type": "object",
    "properties": {"years": {"type": "integer"}},
    "required": ["years"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("answer", "schema", "valid"),
    [
        ('{"years": 2}', SCHEMA, True),
        ('{"years": "two"}', SCHEMA, False),  # parses, does not match
        ('{"years": 2, "months": 0}', SCHEMA, False),
        ("two years", SCHEMA, False),  # not JSON at all
        ("[" * 100_000 + "]" * 100_000, SCHEMA, False),  # absurdly deep
        ('{"years": 2}', {"type": "no-such-type"}, None),  # the schema itself is invalid
        ('{"years": 2}', {"$ref": "https://example.com/remote.json"}, None),  # never fetched
        (None, SCHEMA, None),
        ('{"years": 2}', None, None),
    ],
)
def test_schema_validity(answer: str | None, schema: dict[str, Any] | None, valid: bool) -> None:
    assert schema_valid(answer, schema) is valid


def test_compare_checks_each_answer_against_the_requested_schema() -> None:
    request = sample_request(
        answer='{"years": 2}',
        request={
            "messages": [{"role": "user", "content": "warranty?"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "warranty", "strict": True, "schema": SCHEMA},
            },
        },
    )
    primary = PrimaryAnswer.of(request)
    wrong = shadow(request.request_id, answer='{"years": "two"}')
    c = compare(primary, wrong)
    assert (c.primary_json_valid, c.candidate_json_valid) == (True, True)
    assert (c.primary_schema_valid, c.candidate_schema_valid) == (True, False)
    # a result that waited for its request (held as a digest) is checked the same way
    kept_primary = PrimaryAnswer.model_validate(primary.model_dump(mode="json"))
    kept_wrong = CandidateAnswer.model_validate(CandidateAnswer.of(wrong).model_dump())
    held = compare(kept_primary, kept_wrong)
    assert held.candidate_schema_valid is False
    plain = compare(PrimaryAnswer.of(sample_request()), shadow())
    assert (plain.primary_schema_valid, plain.candidate_schema_valid) == (None, None)
