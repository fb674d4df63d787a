"""Faithfulness in the RAGAS manner: claims extracted, then verified against the context.

Two judge calls: the judge splits the answer into claims, then says for each claim whether
the context supports it. The score is supported ÷ total, reported on 1–5 as
``1 + 4 × fraction`` (all supported: 5; none: 1). There is no score — ``score`` is None and
``no_score_reason`` says why, never a silent 0 or 5 — when:

- the answer makes no claims (empty, or a refusal: the judge extracts none): ``no_claims``;
- there is no context to check against: ``no_context`` (the judge is not called);
- the judge's reply does not follow the protocol (not JSON, fields missing, one verdict per
  claim not given): ``judge_output``;
- the call failed after the client's retries (HTTP error, timeout): ``judge_error``.

:func:`judge_faithfulness` is the API (``shadowlab run judge`` and ``shadowlab eval`` call
it); :func:`score_from_counts`, :func:`parse_claims` and :func:`parse_verdicts` are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import openai

from processors.judge.calls import JUDGE_OUTPUT, NO_CLAIMS, NO_CONTEXT, ask, reason
from processors.judge.prompts import (
    JudgeOutputError,
    claims_messages,
    parse_json_object,
    verify_messages,
)
from shadowlab.core.settings import ModelEndpoint


@dataclass(frozen=True)
class FaithfulnessVerdict:
    """The judge's faithfulness verdict on one answer."""

    score: float | None  # 1..5, None when no score
    claims_total: int | None
    claims_supported: int | None
    no_score_reason: str | None
    cost_usd: float  # judge tokens × the judge endpoint's price


def score_from_counts(supported: int, total: int) -> float | None:
    """``1 + 4 × supported / total``; None when there are no claims.

    Raises:
        ValueError: counts out of range (negative, or more supported than total).
    """
    if total < 0 or not 0 <= supported <= max(total, 0):
        raise ValueError(f"claim counts out of range: {supported} supported of {total}")
    if total == 0:
        return None
    return 1 + 4 * supported / total


def parse_claims(content: str | None) -> list[str]:
    """The claims in an ``extract_claims`` reply (blank ones dropped; may be empty).

    Raises:
        JudgeOutputError: not ``{"claims": [<string>, ...]}``.
    """
    data = parse_json_object(content)
    claims = data.get("claims")
    if not isinstance(claims, list):
        raise JudgeOutputError('the reply has no "claims" list')
    if not all(isinstance(c, str) for c in claims):
        raise JudgeOutputError('"claims" holds something other than strings')
    return [c.strip() for c in claims if c.strip()]


def parse_verdicts(content: str | None, claims: Sequence[str]) -> list[bool]:
    """Whether each of ``claims`` is supported, from a ``verify_claims`` reply.

    ``supported`` must be a JSON boolean (RAGAS' 1 / 0 is accepted too).

    Raises:
        JudgeOutputError: no ``verdicts`` list, not one verdict per claim, or a verdict
            without a usable ``supported``.
    """
    data = parse_json_object(content)
    verdicts = data.get("verdicts")
    if not isinstance(verdicts, list):
        raise JudgeOutputError('the reply has no "verdicts" list')
    if len(verdicts) != len(claims):
        raise JudgeOutputError(f"{len(verdicts)} verdicts for {len(claims)} claims")
    supported: list[bool] = []
    for i, verdict in enumerate(verdicts):
        value = verdict.get("supported") if isinstance(verdict, dict) else None
        if isinstance(value, bool):
            supported.append(value)
        elif isinstance(value, int) and value in (0, 1):
            supported.append(bool(value))
        else:
            raise JudgeOutputError(f'verdict {i + 1} has no boolean "supported"')
    return supported


def precheck(answer: str, context: Sequence[str]) -> FaithfulnessVerdict | None:
    """The verdict when the judge need not be called (empty answer, no context), else None."""
    if not answer.strip():
        return FaithfulnessVerdict(None, 0, 0, reason(NO_CLAIMS, "the answer is empty"), 0.0)
    if not any(doc.strip() for doc in context):
        detail = "no context documents to check the answer against"
        return FaithfulnessVerdict(None, None, None, reason(NO_CONTEXT, detail), 0.0)
    return None


async def judge_faithfulness(
    client: openai.AsyncOpenAI,
    judge: ModelEndpoint,
    *,
    question: str,
    answer: str,
    context: list[str],
) -> FaithfulnessVerdict:
    """Judge how faithful ``answer`` is to ``context`` (two judge calls; see the module doc).

    Args:
        client: an async client for the judge's endpoint (its ``max_retries`` are the
            retries; :func:`processors.clients.model_client` makes one).
        judge: the judge model's endpoint: its model name and its price.
        question: what was asked (helps the judge make claims self-contained).
        answer: the answer to judge.
        context: the documents the answer should be grounded in.

    Returns:
        The verdict; never raises for a bad or failed judge reply (no score, with a reason).
    """
    early = precheck(answer, context)
    if early is not None:
        return early
    claims, cost, why = await _extract(client, judge, question, answer)
    if not claims:
        count = 0 if claims is not None else None
        return FaithfulnessVerdict(None, count, count, why, cost)
    verified = await ask(client, judge, verify_messages(context, claims))
    cost += verified.cost_usd
    if verified.error is not None:
        return FaithfulnessVerdict(None, len(claims), None, verified.error, cost)
    try:
        supported = sum(parse_verdicts(verified.content, claims))
    except JudgeOutputError as exc:
        why = reason(JUDGE_OUTPUT, f"verdicts: {exc}")
        return FaithfulnessVerdict(None, len(claims), None, why, cost)
    return FaithfulnessVerdict(
        score_from_counts(supported, len(claims)), len(claims), supported, None, cost
    )


async def _extract(
    client: openai.AsyncOpenAI, judge: ModelEndpoint, question: str, answer: str
) -> tuple[list[str] | None, float, str | None]:
    """The answer's claims (None: no usable reply), the call's cost, and why none."""
    reply = await ask(client, judge, claims_messages(question, answer))
    if reply.error is not None:
        return None, reply.cost_usd, reply.error
    try:
        claims = parse_claims(reply.content)
    except JudgeOutputError as exc:
        return None, reply.cost_usd, reason(JUDGE_OUTPUT, f"claims: {exc}")
    if not claims:
        detail = "the judge found no claims in the answer (a refusal?)"
        return [], reply.cost_usd, reason(NO_CLAIMS, detail)
    return claims, reply.cost_usd, None
