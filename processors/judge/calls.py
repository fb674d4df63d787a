"""One judge call through ``openai.AsyncOpenAI``, its cost, and the no-score reasons.

Retries are the client's: ``openai`` retries connection errors, 408, 409, 429 (honouring
``Retry-After``) and 5xx ``max_retries`` times with exponential backoff. A call that still
fails is a :class:`Reply` with an ``error``, never an exception, so a judge outage becomes a
judgement without a score and its reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai

from processors.judge.prompts import Message
from shadowlab.core.settings import ModelEndpoint

#: Why a judgement has no verdict: ``no_score_reason`` starts with one of these codes,
#: then ``": "`` and a detail (count them with ``splitByString(': ', no_score_reason)[1]``).
NO_CLAIMS = "no_claims"
NO_CONTEXT = "no_context"
JUDGE_ERROR = "judge_error"
JUDGE_OUTPUT = "judge_output"
REASONS = (NO_CLAIMS, NO_CONTEXT, JUDGE_ERROR, JUDGE_OUTPUT)


def reason(code: str, detail: str) -> str:
    """A ``no_score_reason``: the code, then the detail (bounded for the event's field)."""
    return f"{code}: {detail}"[:500]


def reason_code(no_score_reason: str) -> str:
    """The code of a ``no_score_reason`` (the part before ``": "``)."""
    return no_score_reason.split(": ", 1)[0]


@dataclass(frozen=True)
class Reply:
    """The judge's message content, what the call cost, or why it failed."""

    content: str | None
    cost_usd: float
    #: ``judge_error: …`` when the call failed after the client's retries.
    error: str | None = None


async def ask(
    client: openai.AsyncOpenAI, judge: ModelEndpoint, messages: Sequence[Message]
) -> Reply:
    """Send one judge prompt (temperature 0); the reply's content and its cost at the price."""
    completions: Any = client.chat.completions
    try:
        completion = await completions.create(
            model=judge.upstream_name or judge.name, messages=list(messages), temperature=0
        )
    except openai.APIStatusError as exc:
        return Reply(
            None, 0.0, reason(JUDGE_ERROR, f"{type(exc).__name__} (HTTP {exc.status_code})")
        )
    except openai.OpenAIError as exc:
        return Reply(None, 0.0, reason(JUDGE_ERROR, type(exc).__name__))
    usage = completion.usage
    if usage is not None:
        cost = judge.cost(usage.prompt_tokens, usage.completion_tokens)
    else:  # not reported: the judge budget counts it at its worst case, never as free
        prompt_chars = sum(len(str(m.get("content") or "")) for m in messages)
        cost = judge.worst_case_cost(prompt_chars / 4, None)
    content = completion.choices[0].message.content if completion.choices else None
    return Reply(content, cost)
