"""The golden set and its scoring: pure (no I/O), so every number is unit-tested.

A golden file is JSON Lines; each line: ``id``, ``question``, ``keywords`` (list), optional
``context`` (list of documents) and ``expected``. An answer is correct when, by matcher:

- ``keyword`` (the strategy's rule): any keyword occurs in it, case-insensitive;
- ``exact``: it equals ``expected`` after normalising case and whitespace;
- ``regex``: any keyword, as a regular expression, matches it (case-insensitive).

The pre-deployment gate, "candidate accuracy ≥ 95 % of baseline", is decided on a paired
bootstrap over items: both models are scored on the same resampled items, so the interval of
the accuracy ratio reflects the pairing.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas import Outcome

Matcher = Literal["keyword", "exact", "regex"]


class GoldenItem(BaseModel):
    """One golden question."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: Annotated[str, Field(min_length=1, max_length=128)]
    question: Annotated[str, Field(min_length=1)]
    keywords: list[str] = Field(default_factory=list)
    context: list[str] = Field(default_factory=list)
    expected: str | None = None


@dataclass(frozen=True)
class LineProblem:
    """A golden line that could not be used, and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def parse_golden(
    lines: Iterable[str], matcher: Matcher = "keyword"
) -> tuple[list[GoldenItem], list[LineProblem]]:
    """Parse golden lines; bad lines are reported with their number, not fatal.

    Blank lines are skipped. A line is bad when it is not a JSON object, misses a field, has
    a duplicate id, or cannot be scored by ``matcher`` (no keywords for ``keyword`` and
    ``regex``, no ``expected`` for ``exact``, an invalid regular expression).
    """
    items: list[GoldenItem] = []
    problems: list[LineProblem] = []
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = GoldenItem.model_validate_json(line)
        except ValidationError as exc:
            problems.append(LineProblem(number, _first_error(exc)))
            continue
        reason = _unscorable(item, matcher) or (
            "duplicate id " + repr(item.id) if item.id in seen else None
        )
        if reason:
            problems.append(LineProblem(number, reason))
            continue
        seen.add(item.id)
        items.append(item)
    return items, problems


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"])
    if error["type"] == "json_invalid":
        return f"not JSON ({error['msg']})"
    return f"{where or 'line'}: {error['msg']}"


def _unscorable(item: GoldenItem, matcher: Matcher) -> str | None:
    if matcher == "exact":
        return None if item.expected is not None else "no 'expected' answer for --matcher exact"
    if not item.keywords:
        return f"no keywords for --matcher {matcher}"
    if matcher == "regex":
        for pattern in item.keywords:
            try:
                re.compile(pattern)
            except re.error as exc:
                return f"keyword {pattern!r} is not a regular expression: {exc}"
    return None


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def is_correct(item: GoldenItem, answer: str | None, matcher: Matcher = "keyword") -> bool:
    """Whether ``answer`` answers ``item`` (an error or empty answer never does)."""
    if not answer:
        return False
    if matcher == "exact":
        return item.expected is not None and _normal(answer) == _normal(item.expected)
    if matcher == "regex":
        return any(re.search(p, answer, re.IGNORECASE) for p in item.keywords)
    lowered = answer.lower()
    return any(k.lower() in lowered for k in item.keywords)


@dataclass(frozen=True)
class ItemResult:
    """One model's answer to one golden item."""

    item_id: str
    status: Literal["ok", "error", "timeout"]
    answer: str | None
    latency_ms: float
    #: ``None`` when the endpoint reported no usage (unknown, not free).
    prompt_tokens: int | None
    completion_tokens: int | None
    cost_usd: float | None
    correct: bool
    faithfulness: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ModelSummary:
    """One model's figures over the golden set."""

    model: str
    items: int
    accuracy: float
    faithfulness: float | None
    faithfulness_scored: int
    p50_ms: float | None
    p95_ms: float | None
    error_rate: float
    cost_per_1k_usd: float


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` percentile (0–1) by the nearest-rank method; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summarise(model: str, results: Sequence[ItemResult]) -> ModelSummary:
    """Accuracy, faithfulness, latency percentiles (answered calls), errors and cost per 1k.

    The cost per 1k items is the mean over the items whose usage the endpoint reported.
    """
    n = len(results)
    latencies = [r.latency_ms for r in results if r.status == "ok"]
    scores = [r.faithfulness for r in results if r.faithfulness is not None]
    known = [r.cost_usd for r in results if r.cost_usd is not None]  # unknown usage: left out
    return ModelSummary(
        model=model,
        items=n,
        accuracy=sum(r.correct for r in results) / n if n else 0.0,
        faithfulness=sum(scores) / len(scores) if scores else None,
        faithfulness_scored=len(scores),
        p50_ms=percentile(latencies, 0.50),
        p95_ms=percentile(latencies, 0.95),
        error_rate=sum(r.status != "ok" for r in results) / n if n else 0.0,
        cost_per_1k_usd=1000 * sum(known) / len(known) if known else 0.0,
    )


@dataclass(frozen=True)
class Flips:
    """Items whose correctness changed from the current model to the candidate."""

    broken: list[str]  # right → wrong
    fixed: list[str]  # wrong → right


def flips(current: Sequence[ItemResult], candidate: Sequence[ItemResult]) -> Flips:
    """The items the candidate got wrong that the current model got right, and the reverse."""
    now = {r.item_id: r.correct for r in current}
    broken = [r.item_id for r in candidate if now.get(r.item_id) and not r.correct]
    fixed = [r.item_id for r in candidate if now.get(r.item_id) is False and r.correct]
    return Flips(broken, fixed)


@dataclass(frozen=True)
class GateResult:
    """The pre-deployment gate: candidate accuracy / current accuracy against the threshold."""

    outcome: Outcome
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float
    resamples: int


def accuracy_gate(
    current: Sequence[bool],
    candidate: Sequence[bool],
    *,
    threshold: float = 0.95,
    alpha: float = 0.05,
    resamples: int = 2000,
    seed: int = 0,
) -> GateResult:
    """Decide "candidate ≥ ``threshold`` × current accuracy" by a paired percentile bootstrap.

    ``current[i]`` and ``candidate[i]`` are the two models' correctness on item ``i``. Each
    resample draws items with replacement and scores both models on the same draw. ``pass``
    when the interval's low end is at or above the threshold, ``fail`` when its high end is
    below, else ``inconclusive`` (also when there are no items).

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(current) != len(candidate):
        raise ValueError("current and candidate must score the same items, in the same order")
    n = len(current)
    if n == 0:
        return GateResult("inconclusive", None, None, None, threshold, 0)
    rng = random.Random(seed)  # noqa: S311 - resampling, not security
    ratios = []
    for _ in range(resamples):
        draw = [rng.randrange(n) for _ in range(n)]
        base = sum(current[i] for i in draw)
        cand = sum(candidate[i] for i in draw)
        ratios.append(cand / base if base else (1.0 if not cand else math.inf))
    ratios.sort()
    low = ratios[int(alpha / 2 * resamples)]
    high = ratios[min(resamples - 1, int((1 - alpha / 2) * resamples))]
    base_total = sum(current)
    ratio = sum(candidate) / base_total if base_total else None
    outcome: Outcome = (
        "pass" if low >= threshold else "fail" if high < threshold else "inconclusive"
    )
    return GateResult(
        outcome, ratio, low, high if math.isfinite(high) else None, threshold, resamples
    )


def golden_json(items: Iterable[GoldenItem]) -> str:
    """The items back as JSON Lines (for tests and fixtures)."""
    return "".join(json.dumps(i.model_dump(exclude_none=True)) + "\n" for i in items)
