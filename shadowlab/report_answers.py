"""The report's table of answers compared in shadow: per candidate, what the pairs say.

From the joined ``comparisons`` of the route: pairs, mean similarity, structured answers
(a ``json_schema`` answer counts by its schema match, a JSON-format one by its parse; only
requests where both models answered one) with each side's invalid share, and tool-calling
requests (either model called a tool) with the share where the candidate called the same
tools with the same arguments. These are what the ``invalid_output`` and ``tool_agreement``
gates read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

#: A side's structured answer is valid: its schema match, else its JSON parse (``v_c``,
#: ``v_p``); a pair counts when both sides have one.
ANSWERS_SQL = """
SELECT candidate_model, count(), avg(similarity),
       countIf(v_c IS NOT NULL AND v_p IS NOT NULL),
       countIf(v_c IS NOT NULL AND v_p IS NOT NULL AND NOT assumeNotNull(v_c)),
       countIf(v_c IS NOT NULL AND v_p IS NOT NULL AND NOT assumeNotNull(v_p)),
       countIf(tool_calls_match IS NOT NULL), countIf(ifNull(tool_calls_match, false))
FROM (SELECT candidate_model, similarity, tool_calls_match,
             coalesce(candidate_schema_valid, candidate_json_valid) AS v_c,
             coalesce(primary_schema_valid, primary_json_valid) AS v_p
      FROM {db}.comparisons FINAL WHERE route = {route:String} AND status = 'joined')
GROUP BY candidate_model ORDER BY candidate_model"""


@dataclass(frozen=True)
class AnswerQuality:
    """One candidate's joined pairs on the route (a row of :data:`ANSWERS_SQL`)."""

    candidate: str
    pairs: int
    similarity: float | None
    structured: int
    candidate_invalid: int
    primary_invalid: int
    tool_calling: int
    tools_agreed: int


def answer_rows(rows: Sequence[Sequence[Any]]) -> tuple[AnswerQuality, ...]:
    """The query's rows as :class:`AnswerQuality` (a NaN similarity as none)."""
    out = []
    for candidate, pairs, similarity, *counts in rows:
        mean = None if similarity is None or math.isnan(similarity) else float(similarity)
        out.append(AnswerQuality(str(candidate), int(pairs), mean, *(int(c) for c in counts)))
    return tuple(out)


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "—"


_COLUMNS = ("candidate", "pairs", "mean similarity", "structured answers",
            "invalid: candidate", "invalid: primary", "tool-calling requests",
            "tool calls as the primary's")  # fmt: skip


def answers_table(answers: Sequence[AnswerQuality]) -> str:
    """The HTML table (a note when nothing was compared)."""
    if not answers:
        return '<p class="empty-note">no answers compared in shadow</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in _COLUMNS)
    rows = []
    for a in answers:
        cells = (
            a.candidate, f"{a.pairs:,}",
            "—" if a.similarity is None else f"{a.similarity:.2f}", f"{a.structured:,}",
            _share(a.candidate_invalid, a.structured), _share(a.primary_invalid, a.structured),
            f"{a.tool_calling:,}", _share(a.tools_agreed, a.tool_calling),
        )  # fmt: skip
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    body = "\n".join(rows)
    return f'<table id="answers"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'
