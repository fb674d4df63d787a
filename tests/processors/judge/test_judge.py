"""The judge on real parts: the simulator's judge model over HTTP, the real openai client."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import pytest

from processors.clients import model_client
from processors.judge.faithfulness import FaithfulnessVerdict, judge_faithfulness
from processors.judge.pairwise import PairwiseVerdict, judge_pairwise
from processors.judge.prompts import claims_messages, verify_messages
from shadowlab.core.settings import ModelEndpoint
from shadowlab.testing import simulated_models
from shadowlab.testing.model_server import UNSUPPORTED_CLAIM, Simulator, judge_reply

CONTEXT = [
    "The warranty lasts two years. Returns are free within 30 days.",
    "Shipping takes three business days.",
]
QUESTION = "How long is the warranty?"
FAITHFUL = "The warranty lasts two years."
PRICE_IN, PRICE_OUT = 0.01, 0.03


@pytest.fixture(scope="module")
def simulator() -> Iterator[Simulator]:
    fast = {"latency_median_ms": 50, "latency_p95_ms": 100}
    profiles = [
        {"name": "judge", "judge": True, **fast},
        {"name": "biased-judge", "judge": True, "judge_prefers_first": True, **fast},
        {"name": "broken-judge", "judge": True, "error_rate": 1.0, **fast},
        {"name": "gpt-4o", **fast},
    ]
    with simulated_models(profiles, seed=3, time_scale=0.05) as sim:
        yield sim


def _endpoint(sim: Simulator, name: str) -> ModelEndpoint:
    return ModelEndpoint(
        name=name,
        base_url=sim.base_url,
        price_input_per_1k=PRICE_IN,
        price_output_per_1k=PRICE_OUT,
        timeout_s=10,
    )


def _faithfulness(
    sim: Simulator, answer: str, *, judge: str = "judge", context: list[str] | None = None
) -> FaithfulnessVerdict:
    endpoint = _endpoint(sim, judge)

    async def go() -> FaithfulnessVerdict:
        async with model_client(endpoint, max_retries=0) as client:
            return await judge_faithfulness(
                client,
                endpoint,
                question=QUESTION,
                answer=answer,
                context=CONTEXT if context is None else context,
            )

    return asyncio.run(go())


def _pairwise(
    sim: Simulator, primary: str, candidate: str, *, judge: str = "judge"
) -> PairwiseVerdict:
    endpoint = _endpoint(sim, judge)

    async def go() -> PairwiseVerdict:
        async with model_client(endpoint, max_retries=0) as client:
            return await judge_pairwise(
                client,
                endpoint,
                question=QUESTION,
                context=CONTEXT,
                primary=primary,
                candidate=candidate,
            )

    return asyncio.run(go())


def _sim_cost(messages: list[Any], reply: str) -> float:
    """What the simulator bills for one call: ⌈chars / 4⌉ tokens each way."""
    prompt = math.ceil(len(" ".join(m["content"] for m in messages)) / 4)
    completion = math.ceil(len(reply) / 4)
    return (prompt * PRICE_IN + completion * PRICE_OUT) / 1000


def test_a_faithful_answer_scores_5_and_costs_its_tokens(simulator: Simulator) -> None:
    verdict = _faithfulness(simulator, FAITHFUL)
    assert (verdict.score, verdict.claims_total, verdict.claims_supported) == (5.0, 1, 1)
    assert verdict.no_score_reason is None
    extract = claims_messages(QUESTION, FAITHFUL)
    verify = verify_messages(CONTEXT, [FAITHFUL])
    expected = _sim_cost(
        extract, judge_reply({"task": "extract_claims", "answer": FAITHFUL})
    ) + _sim_cost(
        verify,
        judge_reply({"task": "verify_claims", "context": CONTEXT, "claims": [FAITHFUL]}),
    )
    assert verdict.cost_usd == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("answer", "supported", "total"),
    [
        (f"{FAITHFUL} {UNSUPPORTED_CLAIM}", 1, 2),
        (f"{FAITHFUL} Shipping takes three business days. Returns cost 10 dollars.", 2, 3),
        (f"{FAITHFUL} Shipping takes a week. Returns cost 10 dollars. It is blue.", 1, 4),
        ("Returns cost 10 dollars. The warranty lasts five years.", 0, 2),
    ],
)
def test_unsupported_claims_lower_the_score_exactly(
    simulator: Simulator, answer: str, supported: int, total: int
) -> None:
    verdict = _faithfulness(simulator, answer)
    assert (verdict.claims_total, verdict.claims_supported) == (total, supported)
    assert verdict.score == pytest.approx(1 + 4 * supported / total, abs=1e-12)
    assert verdict.score is not None
    assert verdict.score < _faithfulness(simulator, FAITHFUL).score  # type: ignore[operator]
    assert verdict.cost_usd > 0


def test_a_refusal_gets_no_score_with_a_reason(simulator: Simulator) -> None:
    verdict = _faithfulness(simulator, "I'm sorry, but I can't help with that request.")
    assert verdict.score is None
    assert (verdict.claims_total, verdict.claims_supported) == (0, 0)
    assert verdict.no_score_reason is not None
    assert verdict.no_score_reason.startswith("no_claims: ")
    assert verdict.cost_usd > 0  # the judge was asked for the claims


def test_no_answer_or_no_context_gets_no_score_without_calling_the_judge(
    simulator: Simulator,
) -> None:
    before = simulator.requests_served
    empty = _faithfulness(simulator, "  ")
    no_context = _faithfulness(simulator, FAITHFUL, context=[])
    assert simulator.requests_served == before
    assert empty.score is None
    assert empty.no_score_reason is not None
    assert empty.no_score_reason.startswith("no_claims: ")
    assert no_context.score is None
    assert no_context.no_score_reason is not None
    assert no_context.no_score_reason.startswith("no_context: ")
    assert empty.cost_usd == no_context.cost_usd == 0.0


def test_a_model_that_is_not_a_judge_gives_no_score(simulator: Simulator) -> None:
    verdict = _faithfulness(simulator, FAITHFUL, judge="gpt-4o")
    assert verdict.score is None
    assert verdict.claims_total is None
    assert verdict.no_score_reason is not None
    assert verdict.no_score_reason.startswith("judge_output: claims: ")
    assert verdict.cost_usd > 0  # its tokens were paid for all the same
    pair = _pairwise(simulator, FAITHFUL, "Returns cost 10 dollars.", judge="gpt-4o")
    assert pair.preference is None
    assert pair.no_score_reason is not None
    assert pair.no_score_reason.startswith("judge_output: ")


def test_a_failing_judge_gives_no_score_after_the_client_retries(simulator: Simulator) -> None:
    endpoint = _endpoint(simulator, "broken-judge")

    async def go() -> FaithfulnessVerdict:
        async with model_client(endpoint, max_retries=1) as client:
            return await judge_faithfulness(
                client, endpoint, question=QUESTION, answer=FAITHFUL, context=CONTEXT
            )

    before = simulator.requests_served
    verdict = asyncio.run(go())
    assert simulator.requests_served - before == 2  # the call and one retry
    assert verdict.score is None
    assert verdict.no_score_reason == "judge_error: InternalServerError (HTTP 500)"
    assert verdict.cost_usd == 0.0


PAIRS = [
    (FAITHFUL, f"{FAITHFUL} {UNSUPPORTED_CLAIM}"),
    (FAITHFUL, "Returns cost 10 dollars."),
    ("Returns are free within 30 days.", "Shipping takes three business days."),
    ("I'm sorry, I can't help with that.", FAITHFUL),
]


@pytest.mark.parametrize(("x", "y"), PAIRS)
def test_pairwise_preference_is_order_invariant(simulator: Simulator, x: str, y: str) -> None:
    forward = _pairwise(simulator, primary=x, candidate=y)
    backward = _pairwise(simulator, primary=y, candidate=x)
    mirror = {"primary": "candidate", "candidate": "primary", "tie": "tie"}
    assert forward.preference is not None
    assert backward.preference == mirror[forward.preference]
    assert forward.primary_first == forward.candidate_first == forward.preference
    assert forward.judge_calls == backward.judge_calls == 2


def test_pairwise_prefers_the_answer_with_more_supported_claims(simulator: Simulator) -> None:
    assert _pairwise(simulator, FAITHFUL, f"{FAITHFUL} {UNSUPPORTED_CLAIM}").preference == (
        "primary"
    )
    assert _pairwise(simulator, "Returns cost 10 dollars.", FAITHFUL).preference == "candidate"
    both_supported = _pairwise(
        simulator, "Returns are free within 30 days.", "Shipping takes three business days."
    )
    assert both_supported.preference == "tie"


def test_asking_in_both_orders_cancels_position_bias(simulator: Simulator) -> None:
    verdict = _pairwise(simulator, FAITHFUL, "Returns cost 10 dollars.", judge="biased-judge")
    assert (verdict.primary_first, verdict.candidate_first) == ("primary", "candidate")
    assert verdict.preference == "tie"


@pytest.mark.parametrize(
    "candidate",
    [FAITHFUL, f"  {FAITHFUL}\n", "the warranty lasts two years", "Warranty lasts two years!"],
)
def test_identical_answers_never_reach_the_judge(simulator: Simulator, candidate: str) -> None:
    before = simulator.requests_served
    verdict = _pairwise(simulator, FAITHFUL, candidate)
    assert simulator.requests_served == before
    assert (verdict.preference, verdict.judge_calls, verdict.cost_usd) == ("tie", 0, 0.0)
