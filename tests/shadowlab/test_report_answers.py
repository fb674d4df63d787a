"""The report's table of answers compared in shadow, from comparisons stored in chDB."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from clickhouse_connect.driver.client import Client

from schemas import Comparison
from shadowlab.report import build_report, load
from shadowlab.report_answers import AnswerQuality, answers_table
from sinks.clickhouse import insert_events

T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def comparison(i: int, candidate: str, **fields: Any) -> Comparison:
    data = {"request_id": f"r{i}", "event_time": T0 + dt.timedelta(seconds=i), "route": "faq",
            "status": "joined", "primary_model": "gpt-4", "candidate_model": candidate,
            "primary_status": "ok", "candidate_status": "ok", "primary_latency_ms": 100,
            "candidate_latency_ms": 90, "similarity": 0.5}  # fmt: skip
    return Comparison.model_validate({**data, **fields})


def test_structured_answers_and_tool_calls_per_candidate(clickhouse: Client, ch_db: str) -> None:
    insert_events(clickhouse, ch_db, [
        # gpt-4o: 4 schema answers (1 invalid), 2 JSON-object ones (the primary's 1 invalid)
        *(comparison(i, "gpt-4o", primary_schema_valid=True, candidate_schema_valid=i != 0,
                     primary_json_valid=True, candidate_json_valid=True) for i in range(4)),
        comparison(4, "gpt-4o", primary_json_valid=False, candidate_json_valid=True),
        comparison(5, "gpt-4o", primary_json_valid=True, candidate_json_valid=True),
        # mini: tools on 3 requests, the same calls on 2; one plain pair
        *(comparison(10 + i, "mini", tool_calls_match=i < 2) for i in range(3)),
        comparison(13, "mini", similarity=1.0),
        # a missing candidate is no pair
        Comparison.model_validate({**comparison(20, "mini").model_dump(), "status": "missing",
                                   "candidate_status": None, "candidate_latency_ms": None,
                                   "similarity": None}),
    ])  # fmt: skip
    answers = load(clickhouse, ch_db, "faq").answers
    assert answers == (
        AnswerQuality("gpt-4o", 6, 0.5, structured=6, candidate_invalid=1, primary_invalid=1,
                      tool_calling=0, tools_agreed=0),
        AnswerQuality("mini", 4, 0.625, structured=0, candidate_invalid=0, primary_invalid=0,
                      tool_calling=3, tools_agreed=2),
    )  # fmt: skip
    page = build_report(clickhouse, ch_db, "faq")
    table = re.search(r'<table id="answers">.*?</table>', page, re.S)
    assert table is not None
    rows = re.findall(r"<tr>(.*?)</tr>", table.group(0))[1:]
    cells = [re.findall(r"<td>(.*?)</td>", row) for row in rows]
    assert cells == [
        ["gpt-4o", "6", "0.50", "6", "16.7%", "16.7%", "0", "—"],
        ["mini", "4", "0.62", "0", "—", "—", "3", "66.7%"],
    ]


def test_no_pair_says_so() -> None:
    assert "no answers compared" in answers_table([])
