"""The golden set's parsing, matchers, summaries and the paired bootstrap gate (pure)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from processors.evaluation.golden import (
    GoldenItem,
    ItemResult,
    accuracy_gate,
    flips,
    is_correct,
    parse_golden,
    percentile,
    summarise,
)

ITEM = GoldenItem(
    id="a", question="How long?", keywords=["two years", r"\b2 ?y"], expected="Two years."
)


def result(item_id: str, correct: bool, **kw: object) -> ItemResult:
    data: dict[str, object] = {
        "item_id": item_id, "status": "ok", "answer": "x", "latency_ms": 100.0,
        "prompt_tokens": 10, "completion_tokens": 5, "cost_usd": 0.001, "correct": correct,
    }  # fmt: skip
    data.update(kw)
    return ItemResult(**data)  # type: ignore[arg-type]


def test_bad_lines_are_reported_by_number_and_the_rest_kept() -> None:
    lines = [
        json.dumps({"id": "a", "question": "q", "keywords": ["k"]}),
        "",
        "{oops",
        json.dumps({"id": "b", "question": "q"}),
        json.dumps({"id": "a", "question": "q", "keywords": ["k"]}),
        json.dumps({"id": "c", "question": "q", "keywords": ["k"], "colour": "red"}),
        json.dumps({"id": "d", "question": "q", "keywords": "k"}),
    ]
    items, problems = parse_golden(lines)
    assert [i.id for i in items] == ["a"]
    assert [(p.line, p.reason.split(" ")[0]) for p in problems] == [
        (3, "not"), (4, "no"), (5, "duplicate"), (6, "colour:"), (7, "keywords:"),
    ]  # fmt: skip
    _, regex = parse_golden([json.dumps({"id": "r", "question": "q", "keywords": ["("]})], "regex")
    assert "not a regular expression" in regex[0].reason
    _, exact = parse_golden([json.dumps({"id": "e", "question": "q", "keywords": ["k"]})], "exact")
    assert "no 'expected'" in exact[0].reason


def test_matchers() -> None:
    assert is_correct(ITEM, "It lasts TWO YEARS, really.")
    assert not is_correct(ITEM, "It lasts 2y.")
    assert is_correct(ITEM, "It lasts 2y.", "regex")
    assert is_correct(ITEM, "  two   YEARS. ", "exact")
    assert not is_correct(ITEM, "two years, I think", "exact")
    assert not is_correct(ITEM, None)
    assert not is_correct(ITEM, "")


def test_summary_uses_answered_calls_for_latency_and_every_item_for_the_rest() -> None:
    results = [result(f"i{k}", k % 2 == 0, latency_ms=float(k + 1)) for k in range(20)]
    results.append(result("err", False, status="error", answer=None, latency_ms=9999.0,
                          cost_usd=0.0))  # fmt: skip
    summary = summarise("m", results)
    assert summary.accuracy == 10 / 21
    assert summary.error_rate == 1 / 21
    assert summary.p95_ms == 19.0  # nearest rank over the 20 answered: ceil(0.95 × 20) = 19
    assert summary.p50_ms == 10.0
    assert summary.cost_per_1k_usd == pytest.approx(1000 * 0.02 / 21)
    assert percentile([], 0.5) is None


def test_flips_list_both_directions() -> None:
    current = [result("a", True), result("b", False), result("c", True)]
    candidate = [result("a", False), result("b", True), result("c", True)]
    assert (flips(current, candidate).broken, flips(current, candidate).fixed) == (["a"], ["b"])


def test_gate_outcomes() -> None:
    same = [True] * 80 + [False] * 20
    assert accuracy_gate(same, same).outcome == "pass"  # every resample's ratio is exactly 1
    worse = [True] * 40 + [False] * 60
    assert accuracy_gate(same, worse).outcome == "fail"
    slightly = [True] * 76 + [False] * 24  # ratio 0.95 exactly: the interval straddles
    assert accuracy_gate(same, slightly).outcome == "inconclusive"
    assert accuracy_gate([], []).outcome == "inconclusive"
    with pytest.raises(ValueError, match="same items"):
        accuracy_gate([True], [])


def test_paired_interval_matches_scipys_paired_percentile_bootstrap() -> None:
    rng = np.random.default_rng(0)
    current = rng.random(300) < 0.85
    candidate = np.where(rng.random(300) < 0.9, current, ~current)
    ours = accuracy_gate(current.tolist(), candidate.tolist(), resamples=4000)

    def ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return b.mean(axis=axis) / a.mean(axis=axis)

    ref = stats.bootstrap((current, candidate), ratio, paired=True, vectorized=True,
                          n_resamples=4000, method="percentile", random_state=1)  # fmt: skip
    assert ours.ci_low == pytest.approx(ref.confidence_interval.low, abs=0.01)
    assert ours.ci_high == pytest.approx(ref.confidence_interval.high, abs=0.01)
