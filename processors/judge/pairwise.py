"""Pairwise preference between a primary and a candidate answer, free of position bias.

Cheap checks first: identical or near-identical answers (normalised token F1 at or above a
threshold, 0.95 by default) are a ``tie`` without calling the judge (cost 0). Otherwise the
judge is asked twice, concurrently: primary shown as answer A, then candidate shown as A.
When both orders agree, that is the preference; when they disagree (the judge preferred
whichever came first, say), it is a ``tie``. A failed or unusable reply in either order
gives no preference, with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import openai

from processors.compare import token_f1
from processors.judge.calls import JUDGE_OUTPUT, ask, reason
from processors.judge.prompts import JudgeOutputError, pairwise_messages, parse_json_object
from shadowlab.core.settings import ModelEndpoint

#: The judgement's ``preference``.
Preference = Literal["primary", "candidate", "tie"]
#: The judge's answer in one order.
Choice = Literal["A", "B", "tie"]

#: Token F1 at or above which two answers are a tie without asking the judge.
NEAR_IDENTICAL_F1 = 0.95


@dataclass(frozen=True)
class PairwiseVerdict:
    """The preference between a primary and a candidate answer, after both orders."""

    preference: Preference | None  # None when no verdict (see no_score_reason)
    no_score_reason: str | None
    cost_usd: float  # judge tokens × the judge endpoint's price
    #: Judge calls made: 0 when the cheap checks decided, else 2.
    judge_calls: int
    #: The verdict with the primary answer shown first, and with the candidate shown first.
    primary_first: Preference | None = None
    candidate_first: Preference | None = None


def near_identical(primary: str, candidate: str, threshold: float = NEAR_IDENTICAL_F1) -> bool:
    """Whether two answers are the same for a judge's purpose (no call needed)."""
    return primary.strip() == candidate.strip() or token_f1(primary, candidate) >= threshold


def parse_preference(content: str | None) -> Choice:
    """The choice in a ``pairwise`` reply: ``"A"``, ``"B"`` or ``"tie"`` (any case).

    Raises:
        JudgeOutputError: not ``{"preference": "A" | "B" | "tie", ...}``.
    """
    data = parse_json_object(content)
    value = data.get("preference")
    if not isinstance(value, str):
        raise JudgeOutputError('the reply has no "preference" string')
    normalised = value.strip().upper().removeprefix("ANSWER").strip(" _")
    if normalised == "A":
        return "A"
    if normalised == "B":
        return "B"
    if normalised == "TIE":
        return "tie"
    raise JudgeOutputError(f'"preference" is {value!r}, not "A", "B" or "tie"')


def as_preference(choice: Choice, *, primary_is_a: bool) -> Preference:
    """What ``choice`` means for the primary and the candidate in that order."""
    if choice == "tie":
        return "tie"
    return "primary" if (choice == "A") == primary_is_a else "candidate"


def combine(primary_first: Preference, candidate_first: Preference) -> Preference:
    """The verdicts of both orders as one: agreeing verdicts win, disagreeing ones tie."""
    return primary_first if primary_first == candidate_first else "tie"


async def judge_pairwise(
    client: openai.AsyncOpenAI,
    judge: ModelEndpoint,
    *,
    question: str,
    context: Sequence[str],
    primary: str,
    candidate: str,
    near_identical_f1: float = NEAR_IDENTICAL_F1,
) -> PairwiseVerdict:
    """Which answer the judge prefers, asked in both orders (see the module doc).

    Returns:
        The verdict; never raises for a bad or failed judge reply (no preference, a reason).
    """
    if near_identical(primary, candidate, near_identical_f1):
        return PairwiseVerdict("tie", None, 0.0, 0)
    replies = await asyncio.gather(
        ask(client, judge, pairwise_messages(question, context, primary, candidate)),
        ask(client, judge, pairwise_messages(question, context, candidate, primary)),
    )
    cost = sum(r.cost_usd for r in replies)
    verdicts: list[Preference] = []
    for reply, primary_is_a, order in zip(
        replies, (True, False), ("primary first", "candidate first"), strict=True
    ):
        if reply.error is not None:
            return PairwiseVerdict(None, reply.error, cost, 2)
        try:
            choice = parse_preference(reply.content)
        except JudgeOutputError as exc:
            return PairwiseVerdict(None, reason(JUDGE_OUTPUT, f"{order}: {exc}"), cost, 2)
        verdicts.append(as_preference(choice, primary_is_a=primary_is_a))
    first, second = verdicts
    return PairwiseVerdict(combine(first, second), None, cost, 2, first, second)
