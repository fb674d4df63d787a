"""The judge's prompts and their JSON protocol (pure: no I/O).

Every judge call is two messages: a system message with the instructions, which state the
reply's JSON format, and a user message that is one JSON object naming the ``task`` and
holding its inputs. The judge replies with one JSON object in its message content:

==================  ==========================================  ===============================
task                input (user message)                        reply (message content)
==================  ==========================================  ===============================
``extract_claims``  ``question``, ``answer``                    ``{"claims": ["…", …]}``
``verify_claims``   ``context`` (documents), ``claims``         ``{"verdicts": [{"claim": "…",
                                                                "supported": true, "reason":
                                                                "…"}, …]}`` (one per claim,
                                                                in order)
``pairwise``        ``question``, ``context``, ``answer_a``,    ``{"preference": "A" | "B" |
                    ``answer_b``                                "tie", "reason": "…"}``
==================  ==========================================  ===============================

The instructions are written for a real LLM; the simulator's judge model
(:mod:`shadowlab.testing.model_server`) answers the same messages deterministically.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

TASK_CLAIMS = "extract_claims"
TASK_VERIFY = "verify_claims"
TASK_PAIRWISE = "pairwise"
TASKS = (TASK_CLAIMS, TASK_VERIFY, TASK_PAIRWISE)

CLAIMS_INSTRUCTIONS = """\
You check answers for faithfulness. Split the ANSWER into its claims: short, self-contained \
factual statements that can each be checked on its own (replace pronouns with what they \
refer to). Keep the answer's wording where you can; do not add, infer or judge anything. \
An answer that declines, asks a question back or states nothing checkable has no claims.

The input is one JSON object: {"task": "extract_claims", "question": "...", "answer": "..."}

Reply with exactly one JSON object and nothing else:
{"claims": ["<claim>", "<claim>"]}
Reply {"claims": []} when the answer makes no claims."""

VERIFY_INSTRUCTIONS = """\
You check claims against a context. For each claim decide whether the CONTEXT supports it: \
supported means the claim can be directly inferred from the context alone. A claim the \
context does not state, or contradicts, is not supported. Do not use outside knowledge.

The input is one JSON object: \
{"task": "verify_claims", "context": ["<document>", ...], "claims": ["<claim>", ...]}

Reply with exactly one JSON object and nothing else, one verdict per claim, in the order \
the claims were given:
{"verdicts": [{"claim": "<the claim>", "supported": true, "reason": "<one short sentence>"}]}
"supported" is the JSON boolean true or false."""

PAIRWISE_INSTRUCTIONS = """\
You compare two answers to the same question, given the context the answers were meant to \
use. Prefer the answer that is more faithful to the context (fewer claims the context does \
not support); when both are equally faithful, prefer the one that answers the question more \
completely and correctly. Ignore length, style and the order in which the answers are \
shown. If neither is better, say tie.

The input is one JSON object: {"task": "pairwise", "question": "...", \
"context": ["<document>", ...], "answer_a": "...", "answer_b": "..."}

Reply with exactly one JSON object and nothing else:
{"preference": "A", "reason": "<one short sentence>"}
where "preference" is "A", "B" or "tie"."""

Message = dict[str, str]


class JudgeOutputError(ValueError):
    """The judge's reply does not follow the protocol (its message says how)."""


def _messages(instructions: str, task: str, **inputs: Any) -> list[Message]:
    payload = json.dumps({"task": task, **inputs}, ensure_ascii=False)
    return [{"role": "system", "content": instructions}, {"role": "user", "content": payload}]


def claims_messages(question: str, answer: str) -> list[Message]:
    """The messages asking the judge to split ``answer`` into claims."""
    return _messages(CLAIMS_INSTRUCTIONS, TASK_CLAIMS, question=question, answer=answer)


def verify_messages(context: Sequence[str], claims: Sequence[str]) -> list[Message]:
    """The messages asking the judge which of ``claims`` the ``context`` supports."""
    return _messages(VERIFY_INSTRUCTIONS, TASK_VERIFY, context=list(context), claims=list(claims))


def pairwise_messages(
    question: str, context: Sequence[str], answer_a: str, answer_b: str
) -> list[Message]:
    """The messages asking the judge to prefer answer A, answer B or neither."""
    return _messages(
        PAIRWISE_INSTRUCTIONS,
        TASK_PAIRWISE,
        question=question,
        context=list(context),
        answer_a=answer_a,
        answer_b=answer_b,
    )


def task_input(messages: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The task object of a judge request (its last user message), or None if it is not one."""
    content = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), None)
    if not isinstance(content, str):
        return None
    try:
        data = json.loads(content)
    except (ValueError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("task") in TASKS:
        return data
    return None


_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


def parse_json_object(content: str | None) -> dict[str, Any]:
    """The one JSON object in a judge's reply.

    Tolerates what real models add around it: surrounding whitespace, a Markdown code fence,
    a sentence before or after the object.

    Raises:
        JudgeOutputError: there is no reply, or no JSON object in it.
    """
    if content is None or not content.strip():
        raise JudgeOutputError("the judge replied with no content")
    text = content.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced[1].strip()
    candidates = [text]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except (ValueError, RecursionError):
            continue
        if isinstance(data, dict):
            return data
    raise JudgeOutputError(f"the judge's reply is not a JSON object: {_excerpt(content)}")


def _excerpt(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return f"“{flat if len(flat) <= limit else flat[: limit - 1] + '…'}”"
