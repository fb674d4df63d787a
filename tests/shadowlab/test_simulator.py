"""The model simulator: deterministic fates, the configured latency, and OpenAI-shaped errors."""

from __future__ import annotations

import datetime as dt
import statistics
import urllib.error
import urllib.request

import openai
import pytest

from shadowlab.testing import simulated_models
from shadowlab.testing.model_server import UNSUPPORTED_CLAIM, WRONG_ANSWER, ModelProfile, decide

REQUEST = {
    "messages": [
        {"role": "system", "content": "The warranty lasts two years. Shipping takes 3 days."},
        {"role": "user", "content": "How long does shipping take?"},
    ]
}


def _req(i: int) -> dict[str, object]:
    return {"messages": [*REQUEST["messages"], {"role": "user", "content": f"q{i}"}]}


def test_same_request_same_fate_other_seed_other_draws() -> None:
    profile = ModelProfile(name="m", latency_median_ms=100, latency_p95_ms=300)
    assert decide(profile, 1, REQUEST) == decide(profile, 1, REQUEST)
    latencies_1 = [decide(profile, 1, _req(i)).latency_s for i in range(50)]
    latencies_2 = [decide(profile, 2, _req(i)).latency_s for i in range(50)]
    assert latencies_1 != latencies_2


def test_latency_follows_the_profile() -> None:
    profile = ModelProfile(name="m", latency_median_ms=800, latency_p95_ms=1500)
    ms = sorted(decide(profile, 0, _req(i)).latency_s * 1000 for i in range(4000))
    assert statistics.median(ms) == pytest.approx(800, rel=0.06)
    assert ms[int(0.95 * len(ms))] == pytest.approx(1500, rel=0.08)


def test_quality_draws() -> None:
    right = ModelProfile(name="m", p_correct=1, p_faithful=1)
    assert decide(right, 0, REQUEST).answer == "Shipping takes 3 days."
    wrong = ModelProfile(name="m", p_correct=0, p_faithful=0)
    assert decide(wrong, 0, REQUEST).answer == f"{WRONG_ANSWER} {UNSUPPORTED_CLAIM}"
    half = ModelProfile(name="m", p_correct=0.5, p_faithful=1)
    share = sum(decide(half, 0, _req(i)).answer != WRONG_ANSWER for i in range(2000)) / 2000
    assert share == pytest.approx(0.5, abs=0.04)


def test_http_errors_are_openai_shaped() -> None:
    profiles = [
        ModelProfile(name="limited", rate_limit_rate=1, retry_after_s=7),
        ModelProfile(name="ok", latency_median_ms=1, latency_p95_ms=2),
    ]
    with (
        simulated_models(profiles, time_scale=0.01) as sim,
        openai.OpenAI(base_url=sim.base_url, api_key="x", max_retries=0) as client,
    ):
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="limited", messages=REQUEST["messages"])  # type: ignore[arg-type]
        assert info.value.response.headers["retry-after"] == "7"
        with pytest.raises(openai.NotFoundError, match="not simulated"):
            client.chat.completions.create(model="nope", messages=REQUEST["messages"])  # type: ignore[arg-type]
        assert [m.id for m in client.models.list().data] == ["limited", "ok"]
        bad = urllib.request.Request(f"{sim.base_url}/chat/completions", data=b"{oops")  # noqa: S310
        with pytest.raises(urllib.error.HTTPError) as http:
            urllib.request.urlopen(bad, timeout=5)  # noqa: S310 - loopback test server
        assert http.value.code == 400
        http.value.close()


def test_profiles_drift_at_an_event_time() -> None:
    import datetime as dt

    profile = ModelProfile.model_validate(
        {
            "name": "m",
            "latency_median_ms": 100,
            "latency_p95_ms": 100,
            "changes": [
                {
                    "at": "2026-11-21T00:00:00Z",
                    "set": {"latency_median_ms": 300, "latency_p95_ms": 300},
                }
            ],
        }
    )
    before = profile.at(dt.datetime(2026, 11, 20, tzinfo=dt.UTC))
    after = profile.at(dt.datetime(2026, 11, 22, tzinfo=dt.UTC))
    assert decide(before, 0, REQUEST).latency_s == pytest.approx(0.1)
    assert decide(after, 0, REQUEST).latency_s == pytest.approx(0.3)


def test_a_judge_profile_answers_judge_prompts_deterministically() -> None:
    import json

    from processors.judge.prompts import claims_messages, pairwise_messages, verify_messages

    judge = ModelProfile(name="judge", judge=True)
    context = ["The warranty lasts two years. Shipping takes 3 days."]
    answer = f"The warranty lasts two years. {UNSUPPORTED_CLAIM}"

    def reply(messages: list[dict[str, str]]) -> dict[str, object]:
        outcome = decide(judge, 0, {"messages": messages})
        assert outcome == decide(judge, 0, {"messages": messages})
        data = json.loads(outcome.answer)
        assert isinstance(data, dict)
        return data

    claims = reply(claims_messages("How long?", answer))["claims"]
    assert claims == ["The warranty lasts two years.", UNSUPPORTED_CLAIM]
    assert reply(claims_messages("How long?", "I'm sorry, I can't help with that.")) == {
        "claims": []
    }
    verdicts = reply(verify_messages(context, ["the WARRANTY lasts two years", UNSUPPORTED_CLAIM]))
    assert [v["supported"] for v in verdicts["verdicts"]] == [True, False]  # type: ignore[attr-defined, index]
    assert (
        reply(pairwise_messages("q", context, answer, "Shipping takes 3 days."))["preference"]
        == "B"
    )
    assert (
        reply(pairwise_messages("q", context, "Shipping takes 3 days.", "Shipping takes 3 days"))[
            "preference"
        ]
        == "tie"
    )
    # a partial word match is not support: "two year" is not "two years"
    verdicts = reply(verify_messages(context, ["The warranty lasts two year."]))
    assert verdicts["verdicts"][0]["supported"] is False  # type: ignore[index]
    # a judge answers an ordinary request like any model; a model answers a judge prompt in prose
    question = {"role": "user", "content": "How long does shipping take?"}
    ordinary = {"messages": [{"role": "system", "content": context[0]}, question]}
    sure = ModelProfile(name="judge", judge=True, p_correct=1, p_faithful=1)
    assert decide(sure, 0, ordinary).answer == "Shipping takes 3 days."
    plain = decide(ModelProfile(name="m"), 0, {"messages": claims_messages("q", answer)})
    assert not plain.answer.lstrip().startswith("{")


def test_a_daily_cycle_slows_the_peak_hour_and_speeds_the_night() -> None:
    profile = ModelProfile(name="m", latency_median_ms=800, latency_p95_ms=1500, error_rate=0.02,
                           daily_latency=0.4, daily_errors=0.2, daily_peak_hour=14)  # fmt: skip
    peak = profile.at(dt.datetime(2026, 3, 1, 14, tzinfo=dt.UTC))
    night = profile.at(dt.datetime(2026, 3, 1, 2, tzinfo=dt.UTC))
    assert (peak.latency_median_ms, night.latency_median_ms) == (
        pytest.approx(1120),
        pytest.approx(480),
    )
    assert (peak.error_rate, night.error_rate) == (pytest.approx(0.024), pytest.approx(0.016))
    slow = sorted(decide(peak, 0, _req(i)).latency_s for i in range(2000))
    fast = sorted(decide(night, 0, _req(i)).latency_s for i in range(2000))
    assert statistics.median(slow) / statistics.median(fast) == pytest.approx(1120 / 480, rel=0.1)
