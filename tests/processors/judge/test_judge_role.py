"""The judge role on real parts: Tansu, the simulator's judge over HTTP, the openai client."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from processors.clients import model_client
from processors.judge.faithfulness import judge_faithfulness
from processors.judge.role import JudgeRole, judge_sampled
from schemas import Judgement, RequestEvent, ShadowResult
from shadowlab.core.settings import Settings
from shadowlab.testing import (
    make_settings,
    models_at,
    produce,
    read_events,
    read_messages,
    route_config,
    run_until,
    sample_request,
    simulated_models,
)
from shadowlab.testing import sample_shadow as _sample_shadow
from shadowlab.testing.model_server import UNSUPPORTED_CLAIM, Simulator

CONTEXT = "The warranty lasts two years. Returns are free within 30 days."
FAITHFUL = "The warranty lasts two years."
WRONG = "Returns cost 10 dollars."
REFUSAL = "I'm sorry, I can't help with that."
T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    judge = {"name": "judge", "judge": True, "latency_median_ms": 50, "latency_p95_ms": 80}
    with simulated_models([judge], seed=5, time_scale=0.05) as sim:
        yield sim


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    return {
        "requests": topic_factory("req", 4),
        "shadow": topic_factory("shadow", 4),
        "judgements": topic_factory("judgements", 4),
    }


def _settings(sim: Simulator, tmp_path: Path, topics: dict[str, str], **judge: Any) -> Settings:
    prices = {"price_input_per_1k": 0.01, "price_output_per_1k": 0.03}
    return make_settings(
        tmp_path,
        models=models_at(sim.base_url, "gpt-4", "gpt-4o", "judge", **prices, timeout_s=10),
        routes=[route_config("gpt-4", "gpt-4o")],
        topics=topics,
        judge={
            "model": "judge",
            "group_id": f"judge-{tmp_path.name}",
            "sample_rate": 1.0,
            "pairwise_sample_rate": 1.0,
            "batch_size": 50,
            "max_retries": 0,
            **judge,
        },
    )


def _request(rid: str, answer: str | None, arm: str = "primary", **changes: Any) -> RequestEvent:
    fields: dict[str, Any] = {
        "request_id": rid,
        "event_time": T0,
        "arm": arm,
        "model": "gpt-4o" if arm == "canary" else "gpt-4",
        "answer": answer,
        "context_documents": [{"id": "doc-1", "text": CONTEXT}],
    }
    return sample_request(**{**fields, **changes})


def _shadow(rid: str, answer: str | None, **changes: Any) -> ShadowResult:
    return _sample_shadow(request_id=rid, event_time=T0, answer=answer, **changes)


def _judged(role: JudgeRole, n: int) -> Callable[[], bool]:
    return lambda: sum(role.counters.judgements.values()) >= n and role.counters.in_flight == 0


def test_the_role_judges_faithfulness_by_arm_and_shadow_preferences(
    simulator: Simulator, kafka: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    requests = [
        _request("c-faithful", FAITHFUL, "canary"),
        _request("c-unfaithful", f"{FAITHFUL} {UNSUPPORTED_CLAIM}", "canary"),
        _request("c-refusal", REFUSAL, "canary"),
        _request("p-1", FAITHFUL),
        _request("p-2", WRONG),
        _request("p-3", FAITHFUL),
        _request("p-4", FAITHFUL),
        _request("p-nocontext", FAITHFUL, context_documents=[]),
        _request("o-1", FAITHFUL, "override"),
        _request("p-failed", None, status="error", error_type="APITimeoutError"),
    ]
    shadows = [
        _shadow("p-1", WRONG),
        _shadow("p-2", FAITHFUL),
        _shadow("p-3", f" {FAITHFUL}"),
        _shadow("p-4", None, status="error", error_type="InternalServerError"),
    ]
    settings = _settings(simulator, tmp_path, topics)
    produce(kafka, topics["shadow"], shadows[1:2], "request_id")  # a result before its request
    produce(kafka, topics["requests"], requests, "request_id")
    produce(kafka, topics["shadow"], [shadows[0], *shadows[2:]], "request_id")
    served = simulator.requests_served
    role = JudgeRole(settings, kafka)
    run_until(role, _judged(role, 11))
    judgements = read_events(kafka, topics["judgements"], Judgement, count=11)
    by_id = {j.judgement_id: j for j in judgements}
    assert len(by_id) == 11
    faithfulness = {
        j.request_id: (j.arm, j.model, j.score, j.claims_total, j.claims_supported)
        for j in judgements
        if j.kind == "faithfulness"
    }
    assert faithfulness == {
        "c-faithful": ("canary", "gpt-4o", 5.0, 1, 1),
        "c-unfaithful": ("canary", "gpt-4o", 3.0, 2, 1),
        "c-refusal": ("canary", "gpt-4o", None, 0, 0),
        "p-1": ("primary", "gpt-4", 5.0, 1, 1),
        "p-2": ("primary", "gpt-4", 1.0, 1, 0),
        "p-3": ("primary", "gpt-4", 5.0, 1, 1),
        "p-4": ("primary", "gpt-4", 5.0, 1, 1),
        "p-nocontext": ("primary", "gpt-4", None, None, None),
    }
    pairwise = {
        j.request_id: (j.arm, j.model, j.preference) for j in judgements if j.kind == "pairwise"
    }
    assert pairwise == {
        "p-1": ("shadow", "gpt-4o", "primary"),
        "p-2": ("shadow", "gpt-4o", "candidate"),
        "p-3": ("shadow", "gpt-4o", "tie"),
    }
    assert by_id["c-refusal:faithfulness:gpt-4o"].no_score_reason.startswith("no_claims: ")  # type: ignore[union-attr]
    assert by_id["p-nocontext:faithfulness:gpt-4"].no_score_reason.startswith("no_context: ")  # type: ignore[union-attr]
    assert all(j.judge_model == "judge" and j.event_time == T0 for j in judgements)
    free = {"p-nocontext:faithfulness:gpt-4", "p-3:pairwise:gpt-4o"}
    assert all((j.judge_cost_usd == 0) == (j.judgement_id in free) for j in judgements)
    # 7 faithfulness judgements ask twice (claims, verdicts), the refusal once; 2 pairwise
    # judgements ask in both orders; the identical pair and the empty context never ask
    assert simulator.requests_served - served == 6 * 2 + 1 + 2 * 2
    assert role.counters.skipped["pairwise.not_both_ok"] == 1
    assert role.counters.no_score == {"no_claims": 1, "no_context": 1}
    assert role.counters.spend_usd == pytest.approx(sum(j.judge_cost_usd for j in judgements))
    assert role.pending == 3  # p-nocontext, o-1 and p-failed still wait for a shadow result


def test_the_role_follows_the_stage_and_dead_letters_malformed_events(
    simulator: Simulator, kafka: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    from shadowlab.core.kafka import ensure_topics

    ensure_topics(kafka, {topics["requests"] + ".dlq": 1, topics["shadow"] + ".dlq": 1})
    settings = _settings(simulator, tmp_path, topics)
    producer = Producer(kafka)
    producer.produce(topics["requests"], value=b'{"request_id": 5}', key=b"bad")
    producer.produce(topics["shadow"], value=b"not json", key=b"bad")
    producer.flush(10)
    produce(kafka, topics["requests"], [_request("p-1", FAITHFUL), _request("p-2", FAITHFUL)])
    produce(kafka, topics["shadow"], [_shadow("p-1", WRONG), _shadow("p-2", FAITHFUL)])
    stages = {"support-answer": "shadow"}  # in shadow: preferences only, no faithfulness
    role = JudgeRole(settings, kafka, stage_of=stages.get)
    run_until(role, lambda: _judged(role, 2)() and role.counters.consumed >= 6)
    judgements = read_events(kafka, topics["judgements"], Judgement, count=2)
    assert {(j.request_id, j.kind, j.preference) for j in judgements} == {
        ("p-1", "pairwise", "primary"),
        ("p-2", "pairwise", "tie"),
    }
    assert role.counters.skipped["faithfulness.stage"] == 2
    assert role.counters.malformed == 2
    for topic, error in ((topics["requests"], b"invalid RequestEvent"), (topics["shadow"], b"")):
        [dead] = read_messages(kafka, topic + ".dlq", count=1)
        headers = dict(dead.headers() or [])
        assert error in headers["error"]
        assert headers["role"] == b"judge"
        assert headers["source.topic"] == topic.encode()


def test_sampling_is_by_request_id(
    simulator: Simulator, kafka: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(simulator, tmp_path, topics, sample_rate=0.4, pairwise_sample_rate=0.0)
    ids = [f"s-{i}" for i in range(40)]
    expected = {i for i in ids if judge_sampled(i, "faithfulness", 0.4)}
    assert 5 < len(expected) < 35
    produce(kafka, topics["requests"], [_request(i, FAITHFUL) for i in ids], "request_id")
    produce(kafka, topics["shadow"], [_shadow(i, WRONG) for i in ids], "request_id")
    role = JudgeRole(settings, kafka)
    run_until(role, lambda: role.counters.consumed >= 80 and _judged(role, len(expected))())
    judgements = read_events(kafka, topics["judgements"], Judgement, count=len(expected))
    assert {j.request_id for j in judgements} == expected
    assert {j.kind for j in judgements} == {"faithfulness"}
    assert role.counters.skipped["faithfulness.sampled_out"] == 40 - len(expected)
    assert role.counters.skipped["pairwise.sampled_out"] == 40


def test_judge_spend_stays_within_the_hourly_budget(
    simulator: Simulator, kafka: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    endpoint = _settings(simulator, tmp_path, topics).model("judge")

    async def one() -> float:
        async with model_client(endpoint, max_retries=2) as client:
            verdict = await judge_faithfulness(
                client, endpoint, question="How long is the warranty?", answer=FAITHFUL,
                context=[CONTEXT],
            )  # fmt: skip
        return verdict.cost_usd

    one_judgement = asyncio.run(one())
    cap = one_judgement * 3.5
    settings = _settings(simulator, tmp_path, topics, max_usd_per_hour=cap, concurrency=1)
    produce(kafka, topics["requests"], [_request(f"b-{i}", FAITHFUL) for i in range(20)])
    role = JudgeRole(settings, kafka)
    run_until(role, lambda: role.counters.consumed >= 20 and role.counters.in_flight == 0)
    judged = role.counters.judgements["faithfulness"]
    assert 2 <= judged < 20
    assert role.counters.skipped["faithfulness.budget_usd"] == 20 - judged
    assert role.counters.spend_usd <= cap + 2 * one_judgement
    assert role.counters.spend_usd == pytest.approx(judged * one_judgement)


def test_redelivery_gives_the_same_judgement_ids_and_offsets_are_committed(
    simulator: Simulator, kafka: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    requests = [_request(f"d-{i}", FAITHFUL if i % 2 else WRONG) for i in range(6)]
    shadows = [_shadow(f"d-{i}", WRONG if i % 2 else FAITHFUL) for i in range(6)]
    produce(kafka, topics["requests"], [*requests, requests[0]], "request_id")  # one duplicate
    produce(kafka, topics["shadow"], shadows, "request_id")
    settings = _settings(simulator, tmp_path, topics)

    first = JudgeRole(settings, kafka)
    run_until(first, lambda: first.counters.consumed >= 13 and _judged(first, 12)())
    assert first.counters.skipped["faithfulness.duplicate"] == 1
    assert first.counters.judgements == {"faithfulness": 6, "pairwise": 6}

    # another group reads everything again, as a redelivery would
    again = _settings(simulator, tmp_path, topics, group_id=f"judge-again-{tmp_path.name}")
    second = JudgeRole(again, kafka)
    run_until(second, lambda: second.counters.consumed >= 13 and _judged(second, 12)())
    judgements = read_events(kafka, topics["judgements"], Judgement, count=24)

    ids = [j.judgement_id for j in judgements]
    assert sorted(set(ids)) == sorted(
        {f"d-{i}:faithfulness:gpt-4" for i in range(6)}
        | {f"d-{i}:pairwise:gpt-4o" for i in range(6)}
    )
    assert all(ids.count(i) == 2 for i in set(ids))
    for judgement_id in set(ids):
        pair = [j for j in judgements if j.judgement_id == judgement_id]
        assert pair[0] == pair[1]  # the same verdict and cost: the simulator is deterministic

    # the first group committed what it judged: restarted, it reads only what is new
    produce(kafka, topics["requests"], [_request("d-new", FAITHFUL)], "request_id")
    restarted = JudgeRole(settings, kafka)
    run_until(restarted, _judged(restarted, 1))
    assert restarted.counters.consumed == 1
    assert restarted.counters.judgements == {"faithfulness": 1}


def test_pairs_waiting_at_a_restart_are_rebuilt_and_judged_once(
    simulator: Simulator, kafka: dict[str, str], topics: dict[str, str], tmp_path: Path
) -> None:
    settings = _settings(simulator, tmp_path, topics, sample_rate=0.0)
    # before the restart: one pair complete (judged), one request still waiting for its result
    produce(kafka, topics["requests"], [_request("done-1", FAITHFUL), _request("wait-1", FAITHFUL)],
            "request_id")  # fmt: skip
    produce(kafka, topics["shadow"], [_shadow("done-1", WRONG)], "request_id")
    first = JudgeRole(settings, kafka)
    run_until(first, _judged(first, 1))
    assert first.pending == 1
    # after it: the waiting request is rebuilt from the consumed tail; the judged pair is not
    # asked again
    second = JudgeRole(settings, kafka)
    assert second.rebuild_pending() == 1
    produce(kafka, topics["shadow"], [_shadow("wait-1", WRONG), _shadow("done-1", WRONG)],
            "request_id")  # fmt: skip
    run_until(second, _judged(second, 1))
    assert second.counters.judgements == {"pairwise": 1}
    judgements = read_events(kafka, topics["judgements"], Judgement, count=2)
    assert sorted(j.request_id for j in judgements) == ["done-1", "wait-1"]
