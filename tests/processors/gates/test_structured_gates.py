"""The structured-output gates on chDB: invalid outputs paired, tool-call agreement."""

from __future__ import annotations

import datetime as dt
from typing import Any

from clickhouse_connect.driver.client import Client

from processors.gates.evaluate import Alphas, Pairs, Scores
from processors.gates.queries import GateQueries, Window
from schemas import Comparison
from shadowlab.core.plan import DEFAULT_GATES, GateOverride, RolloutSettings, route_gates
from sinks.clickhouse import insert_events

ROUTE = "extract"
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
GATES = {g.key: g for g in DEFAULT_GATES}
WINDOW = Window(ROUTE, "gpt-4", "gpt-4o", T0, T0 + dt.timedelta(hours=1))


def comparison(i: int, **fields: Any) -> Comparison:
    data = {"request_id": f"r{i}", "event_time": T0 + dt.timedelta(seconds=i), "route": ROUTE,
            "status": "joined", "primary_model": "gpt-4", "candidate_model": "gpt-4o",
            "primary_status": "ok", "candidate_status": "ok", "primary_latency_ms": 100,
            "candidate_latency_ms": 100}  # fmt: skip
    return Comparison.model_validate({**data, **fields})


def _queries(clickhouse: Client, db: str) -> GateQueries:
    return GateQueries(clickhouse, db, alphas=Alphas(0.05, 0.05), tick_s=300,
                       t_star=lambda gate: 1000)  # fmt: skip


def test_invalid_outputs_are_paired_by_schema_then_by_json(clickhouse: Client, ch_db: str) -> None:
    insert_events(clickhouse, ch_db, [
        # a json_schema format: the schema match counts (the JSON parse is not enough)
        comparison(0, primary_json_valid=True, candidate_json_valid=True,
                   primary_schema_valid=True, candidate_schema_valid=False),
        comparison(1, primary_json_valid=True, candidate_json_valid=True,
                   primary_schema_valid=True, candidate_schema_valid=True),
        # a json_object format: the parse counts
        comparison(2, primary_json_valid=False, candidate_json_valid=True),
        # no structured output asked, or a side that did not answer: not a sample
        comparison(3),
        comparison(4, primary_json_valid=True, candidate_status="error"),
    ])  # fmt: skip
    gate = GATES["shadow.invalid_output"]
    pairs, baseline = _queries(clickhouse, ch_db).fetchers[("shadow", "invalid_output")](
        gate, WINDOW
    )
    assert baseline is None
    assert isinstance(pairs, Pairs)
    assert pairs.counts == {(1.0, 0.0): 1, (0.0, 0.0): 1, (0.0, 1.0): 1}


def test_tool_agreement_counts_requests_where_either_model_called_a_tool(
    clickhouse: Client, ch_db: str
) -> None:
    insert_events(clickhouse, ch_db, [comparison(i, tool_calls_match=i % 4 != 0) for i in range(8)]
                  + [comparison(10 + i) for i in range(5)])  # fmt: skip
    gate = GATES["shadow.tool_agreement"]
    scores, _ = _queries(clickhouse, ch_db).fetchers[("shadow", "tool_agreement")](gate, WINDOW)
    assert isinstance(scores, Scores)
    assert scores.counts == {1.0: 6, 0.0: 2}


def test_a_candidate_that_breaks_its_schema_fails_and_one_that_keeps_it_passes(
    clickhouse: Client, ch_db: str
) -> None:
    broken = [comparison(i, primary_schema_valid=True, candidate_schema_valid=i % 5 != 0)
              for i in range(600)]  # fmt: skip
    insert_events(clickhouse, ch_db, broken)
    queries = _queries(clickhouse, ch_db)
    gate = GATES["shadow.invalid_output"]
    assert queries.evaluate(gate, WINDOW).evaluation.outcome == "fail"  # 20 % vs 0 %
    kept = [comparison(1000 + i, primary_schema_valid=True, candidate_schema_valid=True,
                       route="kept") for i in range(4000)]  # fmt: skip
    insert_events(clickhouse, ch_db, kept)
    window = Window("kept", "gpt-4", "gpt-4o", T0, T0 + dt.timedelta(hours=2))
    assert queries.evaluate(gate, window).evaluation.outcome == "pass"


def test_the_structured_gates_are_off_until_a_route_turns_them_on() -> None:
    plan = RolloutSettings()
    assert not {"invalid_output", "tool_agreement"} & {g.name for g in route_gates(plan)}
    on = route_gates(plan, {"invalid_output": GateOverride(enabled=True)})
    [gate] = [g for g in on if g.name == "invalid_output"]
    assert (gate.stage, gate.required) == ("shadow", False)
    assert gate.margin == "invalid output rate ≤ 1.1 × baseline + 0.002"
