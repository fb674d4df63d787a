"""Pure comparison of a primary answer with a candidate answer.

Everything here is a function of its arguments (no I/O, no clock), so the join role is a thin
shell around it and these functions are tested on their own:

- :func:`token_f1`: SQuAD-style normalised token F1 (lower case, punctuation and articles
  removed, whitespace collapsed), symmetric, 1.0 for equal texts.
- :func:`is_refusal`: the answer declines the task ("I can't help with that…").
- :func:`json_valid`: the answer parses as JSON (only asked when the request wanted JSON).
- :func:`compare` / :func:`missing`: build the :class:`~schemas.Comparison` event.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import re
import string
from typing import Self

from pydantic import BaseModel, ConfigDict

from schemas import Comparison, RequestEvent, ShadowResult
from schemas.request import CallStatus

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry|unfortunately|as an ai)\b"
    r"|\bi (?:can(?:'|no)?t|cannot|won'?t|am (?:not able|unable)|'m (?:not able|unable)) "
    r"(?:help|assist|answer|provide|comply|do that|share|discuss)",
    re.IGNORECASE,
)


def normalise(text: str) -> list[str]:
    """Tokens of ``text`` after lower-casing, dropping punctuation and articles."""
    text = text.lower().translate(_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def token_f1(a: str, b: str) -> float:
    """Token-overlap F1 of two texts, 0–1 (1.0 when both normalise to nothing)."""
    ta, tb = normalise(a), normalise(b)
    if not ta or not tb:
        return 1.0 if ta == tb else 0.0
    common = sum((collections.Counter(ta) & collections.Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def is_refusal(answer: str) -> bool:
    """Whether the answer declines the task instead of answering it."""
    return _REFUSAL.search(answer[:400]) is not None


def json_valid(answer: str) -> bool:
    """Whether ``answer`` is one JSON value (surrounding whitespace allowed)."""
    try:
        json.loads(answer)
    except (ValueError, RecursionError):  # deep nesting is not valid JSON for us either
        return False
    return True


def wants_json(event: RequestEvent) -> bool:
    """Whether the request asked for a JSON ``response_format``."""
    fmt = event.request.response_format or {}
    return fmt.get("type") in ("json_object", "json_schema")


class PrimaryAnswer(BaseModel):
    """The part of a request the join keeps while it waits for candidates (small, JSON-able)."""

    model_config = ConfigDict(frozen=True)

    request_id: str
    event_time: dt.datetime
    route: str
    model: str
    status: CallStatus
    latency_ms: float
    ttft_ms: float | None
    tokens: int
    cost_usd: float
    answer: str | None
    json_wanted: bool

    @classmethod
    def of(cls, event: RequestEvent) -> Self:
        """The primary side of ``event``."""
        return cls(
            request_id=event.request_id,
            event_time=event.event_time,
            route=event.route,
            model=event.model,
            status=event.status,
            latency_ms=event.latency_ms,
            ttft_ms=event.ttft_ms,
            tokens=event.prompt_tokens + event.completion_tokens,
            cost_usd=event.cost_usd,
            answer=event.answer,
            json_wanted=wants_json(event),
        )


def _primary_fields(primary: PrimaryAnswer) -> dict[str, object]:
    return {
        "request_id": primary.request_id,
        "event_time": primary.event_time,
        "route": primary.route,
        "primary_model": primary.model,
        "primary_status": primary.status,
        "primary_latency_ms": primary.latency_ms,
        "primary_ttft_ms": primary.ttft_ms,
        "primary_tokens": primary.tokens,
        "primary_cost_usd": primary.cost_usd,
    }


def compare(primary: PrimaryAnswer, shadow: ShadowResult) -> Comparison:
    """The joined comparison of ``primary`` and ``shadow`` (answer metrics when both answered).

    Metrics that need both answers (exact match, similarity, length ratio) are empty unless
    both calls ended ``ok`` with an answer; each side's refusal and JSON flags need only
    that side's answer.
    """
    a, b = primary.answer, shadow.answer
    both_ok = primary.status == "ok" and shadow.status == "ok"
    pair = (a, b) if both_ok and a is not None and b is not None else None
    ratio: float | None = None
    if pair is not None:
        ratio = len(pair[1]) / len(pair[0]) if pair[0] else (1.0 if not pair[1] else None)
    return Comparison(
        **_primary_fields(primary),  # type: ignore[arg-type]
        status="joined",
        candidate_model=shadow.candidate,
        candidate_status=shadow.status,
        candidate_latency_ms=shadow.latency_ms,
        candidate_ttft_ms=shadow.ttft_ms,
        candidate_tokens=shadow.prompt_tokens + shadow.completion_tokens,
        candidate_cost_usd=shadow.cost_usd,
        exact_match=pair[0].strip() == pair[1].strip() if pair is not None else None,
        similarity=token_f1(*pair) if pair is not None else None,
        length_ratio=min(ratio, 1e6) if ratio is not None else None,
        primary_refusal=is_refusal(a) if a is not None else None,
        candidate_refusal=is_refusal(b) if b is not None else None,
        primary_json_valid=json_valid(a) if primary.json_wanted and a is not None else None,
        candidate_json_valid=json_valid(b) if primary.json_wanted and b is not None else None,
    )


def missing(primary: PrimaryAnswer, candidate: str) -> Comparison:
    """The comparison for a candidate whose result never arrived within the join window."""
    return Comparison(
        **_primary_fields(primary),  # type: ignore[arg-type]
        status="missing",
        candidate_model=candidate,
        primary_refusal=is_refusal(primary.answer) if primary.answer is not None else None,
    )
