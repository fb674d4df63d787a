"""The judge's pure parts: scores, reply parsing, order combination, waiting pairs, ids."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from processors.judge.faithfulness import parse_claims, parse_verdicts, precheck, score_from_counts
from processors.judge.pairwise import as_preference, combine, near_identical, parse_preference
from processors.judge.pending import PendingPairs, PendingRequest
from processors.judge.prompts import JudgeOutputError, parse_json_object, task_input
from processors.judge.role import judge_sampled, judgement_id, question_of
from shadowlab.testing import sample_request, sample_shadow


@pytest.mark.parametrize(
    ("supported", "total", "score"),
    [(1, 1, 5.0), (0, 1, 1.0), (1, 2, 3.0), (2, 3, 1 + 8 / 3), (3, 4, 4.0), (0, 0, None)],
)
def test_score_is_1_plus_4_times_the_supported_fraction(
    supported: int, total: int, score: float | None
) -> None:
    assert score_from_counts(supported, total) == score


@pytest.mark.parametrize(("supported", "total"), [(2, 1), (-1, 3), (0, -1)])
def test_impossible_counts_are_refused(supported: int, total: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        score_from_counts(supported, total)


@pytest.mark.parametrize(
    "reply",
    [
        '{"claims": ["A is B.", "C is D."]}',
        '```json\n{"claims": ["A is B.", "C is D."]}\n```',
        'Here are the claims:\n{"claims": ["A is B.", " C is D. ", ""]}\nHope this helps.',
    ],
)
def test_claims_are_read_from_what_real_models_reply(reply: str) -> None:
    assert parse_claims(reply) == ["A is B.", "C is D."]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (None, "no content"),
        ("", "no content"),
        ("The answer has two claims.", "not a JSON object"),
        ('["A is B."]', "not a JSON object"),
        ('{"statements": ["A is B."]}', 'no "claims" list'),
        ('{"claims": "A is B."}', 'no "claims" list'),
        ('{"claims": [1, 2]}', "other than strings"),
        ('{"claims": ["A is B."', "not a JSON object"),
    ],
)
def test_unusable_claim_replies_say_why(reply: str | None, message: str) -> None:
    with pytest.raises(JudgeOutputError, match=re.escape(message)):
        parse_claims(reply)


def test_verdicts_are_one_boolean_per_claim_in_order() -> None:
    reply = (
        '{"verdicts": [{"claim": "a", "supported": true, "reason": "x"}, '
        '{"claim": "b", "supported": false}, {"supported": 1}]}'
    )
    assert parse_verdicts(reply, ["a", "b", "c"]) == [True, False, True]
    with pytest.raises(JudgeOutputError, match="2 verdicts for 3 claims"):
        parse_verdicts('{"verdicts": [{"supported": true}, {"supported": true}]}', "abc")
    with pytest.raises(JudgeOutputError, match='verdict 1 has no boolean "supported"'):
        parse_verdicts('{"verdicts": [{"supported": "yes"}]}', ["a"])
    with pytest.raises(JudgeOutputError, match='no "verdicts" list'):
        parse_verdicts('{"supported": [true]}', ["a"])


def test_precheck_needs_an_answer_and_a_context() -> None:
    assert precheck("Yes.", ["Yes."]) is None
    empty, no_context = precheck(" \n", ["Yes."]), precheck("Yes.", ["", "  "])
    assert empty is not None
    assert no_context is not None
    assert (empty.score, empty.claims_total, empty.cost_usd) == (None, 0, 0.0)
    assert str(empty.no_score_reason).startswith("no_claims: ")
    assert (no_context.score, no_context.claims_total) == (None, None)
    assert str(no_context.no_score_reason).startswith("no_context: ")


@pytest.mark.parametrize(
    ("reply", "choice"),
    [
        ('{"preference": "A", "reason": "r"}', "A"),
        ('{"preference": "b"}', "B"),
        ('{"preference": "Answer B"}', "B"),
        ('{"preference": "TIE"}', "tie"),
        ('```\n{"preference": "tie"}\n```', "tie"),
    ],
)
def test_preference_replies(reply: str, choice: str) -> None:
    assert parse_preference(reply) == choice


@pytest.mark.parametrize("reply", ['{"preference": "C"}', '{"winner": "A"}', "A is better."])
def test_unusable_preference_replies(reply: str) -> None:
    with pytest.raises(JudgeOutputError):
        parse_preference(reply)


def test_both_orders_combine_agreeing_verdicts_and_tie_the_rest() -> None:
    assert as_preference("A", primary_is_a=True) == "primary"
    assert as_preference("A", primary_is_a=False) == "candidate"
    assert as_preference("B", primary_is_a=False) == "primary"
    assert as_preference("tie", primary_is_a=False) == "tie"
    assert combine("candidate", "candidate") == "candidate"
    assert combine("primary", "candidate") == "tie"  # a judge that always picks answer A
    assert combine("primary", "tie") == "tie"
    assert combine("tie", "tie") == "tie"


def test_near_identical_answers() -> None:
    assert near_identical("Two years.", " two years ")
    assert near_identical("The warranty lasts two years.", "Warranty lasts two years!")
    assert not near_identical("Two years.", "Three years.")
    assert not near_identical("The warranty lasts two years.", "The warranty lasts 2 years.")
    assert near_identical("The warranty lasts two years.", "The warranty lasts 2 years.", 0.7)


def test_task_input_reads_only_judge_prompts() -> None:
    assert task_input([{"role": "user", "content": '{"task": "pairwise", "x": 1}'}]) == {
        "task": "pairwise",
        "x": 1,
    }
    assert task_input([{"role": "user", "content": "How long is the warranty?"}]) is None
    assert task_input([{"role": "user", "content": '{"task": "translate"}'}]) is None
    assert task_input([{"role": "system", "content": '{"task": "pairwise"}'}]) is None
    assert parse_json_object(' {"a": 1} ') == {"a": 1}


def _pending(request_id: str, expected: set[str]) -> PendingRequest:
    return PendingRequest(
        request_id=request_id,
        route="support-answer",
        event_time=dt.datetime(2026, 11, 20, tzinfo=dt.UTC),
        question="q",
        context=("c",),
        answer="a",
        primary_model="gpt-4",
        expected=frozenset(expected),
    )


def test_a_request_and_its_results_meet_in_either_order() -> None:
    pending = PendingPairs(ttl_s=60, limit=100)
    early = sample_shadow(request_id="r1", candidate="gpt-4o")
    assert pending.add_result(early, now=0) is None
    assert len(pending) == 1
    assert pending.add_request(_pending("r1", {"gpt-4o", "ft-1"}), now=1) == [early]
    late = sample_shadow(request_id="r1", candidate="ft-1")
    request = pending.add_result(late, now=2)
    assert request is not None
    assert request.request_id == "r1"
    assert len(pending) == 0  # every expected candidate paired: the entry is closed


def test_duplicates_are_paired_once() -> None:
    pending = PendingPairs(ttl_s=60, limit=100)
    pending.add_request(_pending("r1", {"gpt-4o", "ft-1"}), now=0)
    assert pending.add_request(_pending("r1", {"gpt-4o", "ft-1"}), now=0) == []
    result = sample_shadow(request_id="r1", candidate="gpt-4o")
    assert pending.add_result(result, now=1) is not None
    assert pending.add_result(result, now=1) is None
    assert pending.counters.duplicates == 2


def test_waiting_entries_expire_and_are_bounded() -> None:
    pending = PendingPairs(ttl_s=10, limit=3)
    for i in range(5):
        pending.add_request(_pending(f"r{i}", {"gpt-4o"}), now=i)
    assert len(pending) == 3
    assert pending.counters.evicted == 2
    assert pending.expire(now=13) == 2  # r2 (t=2) and r3 (t=3) are 10 s old
    assert pending.add_result(sample_shadow(request_id="r4"), now=13) is not None
    assert pending.add_result(sample_shadow(request_id="r0"), now=13) is None  # evicted
    assert pending.counters.expired == 2


def test_judgement_ids_are_deterministic_and_valid_identifiers() -> None:
    assert judgement_id("req-1", "faithfulness", "gpt-4o") == "req-1:faithfulness:gpt-4o"
    long_id = judgement_id("r" * 128, "pairwise", "my model")
    assert long_id == judgement_id("r" * 128, "pairwise", "my model")
    assert long_id != judgement_id("r" * 128, "pairwise", "other model")
    assert re.fullmatch(r"[\x21-\x7e]{1,128}", long_id)
    assert re.fullmatch(r"[\x21-\x7e]{1,128}", judgement_id("req-1", "pairwise", "a b"))


def test_sampling_is_deterministic_and_independent_per_kind() -> None:
    ids = [f"r{i}" for i in range(10_000)]
    faithful = [judge_sampled(i, "faithfulness", 0.3) for i in ids]
    assert faithful == [judge_sampled(i, "faithfulness", 0.3) for i in ids]
    assert sum(faithful) / len(ids) == pytest.approx(0.3, abs=0.02)
    pairwise = [judge_sampled(i, "pairwise", 0.3) for i in ids]
    both = sum(f and p for f, p in zip(faithful, pairwise, strict=True)) / len(ids)
    assert both == pytest.approx(0.09, abs=0.015)


def test_the_question_is_the_last_user_message() -> None:
    event = sample_request(
        request={
            "messages": [
                {"role": "system", "content": "ctx"},
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": [{"type": "text", "text": "How long?"}]},
            ]
        }
    )
    assert question_of(event) == "How long?"


def test_deeply_nested_replies_and_prompts_are_unusable_not_a_crash() -> None:
    nested = '{"a": ' * 100_000 + "1" + "}" * 100_000
    with pytest.raises(JudgeOutputError):
        parse_json_object(nested)
    assert task_input([{"role": "user", "content": nested}]) is None
