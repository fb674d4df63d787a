"""What the stream roles produce: shadow results, comparisons and judgements."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from schemas._base import (
    Count32,
    Event,
    Identifier,
    Millis,
    ModelName,
    RouteName,
    ShortText,
    Timestamp,
    Tokens,
    Usd,
)
from schemas.request import CallStatus, _ModelCall

Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class ShadowResult(_ModelCall):
    """A candidate model's answer to a replayed production request (``llm.shadow``)."""

    request_id: Identifier
    #: The original request's event time, so shadow rows fall in the same windows.
    event_time: Timestamp
    #: Wall-clock time the replay finished.
    replayed_at: Timestamp
    route: RouteName
    candidate: ModelName
    primary_model: ModelName
    #: Calls made, retries included (1 when the first call answered).
    attempts: Annotated[int, Field(ge=1, le=100)] = 1


class Comparison(Event):
    """One primary answer paired with one candidate answer (``llm.comparisons``).

    ``status`` is ``missing`` when the candidate's result never arrived within the join
    window: then every candidate field and every similarity metric is empty.
    """

    request_id: Identifier
    event_time: Timestamp
    route: RouteName
    status: Literal["joined", "missing"]
    primary_model: ModelName
    candidate_model: ModelName
    primary_status: CallStatus
    candidate_status: CallStatus | None = None
    primary_latency_ms: Millis
    candidate_latency_ms: Millis | None = None
    primary_ttft_ms: Millis | None = None
    candidate_ttft_ms: Millis | None = None
    #: Null when the side's usage is unknown (its server reported none) or it never ran.
    primary_tokens: Tokens | None = 0
    candidate_tokens: Tokens | None = None
    primary_cost_usd: Usd | None = 0.0
    candidate_cost_usd: Usd | None = None
    exact_match: bool | None = None
    #: Normalised token F1 of the two answers, 0–1.
    similarity: Fraction | None = None
    #: len(candidate answer) / len(primary answer).
    length_ratio: Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False)] | None = None
    primary_refusal: bool | None = None
    candidate_refusal: bool | None = None
    #: Only when a JSON response_format was asked.
    primary_json_valid: bool | None = None
    candidate_json_valid: bool | None = None
    #: Only when a ``json_schema`` response_format was asked: the answer parses as JSON and
    #: the document matches the schema (a schema that is itself invalid: empty).
    primary_schema_valid: bool | None = None
    candidate_schema_valid: bool | None = None
    #: When either side called tools (both ok): the same tools, in order, with arguments
    #: equal as JSON.
    tool_calls_match: bool | None = None

    @model_validator(mode="after")
    def _missing_has_no_candidate(self) -> Self:
        if self.status == "missing" and self.candidate_status is not None:
            raise ValueError("a 'missing' comparison has no candidate_status")
        if self.status == "joined" and self.candidate_status is None:
            raise ValueError("a 'joined' comparison needs candidate_status")
        return self


class Judgement(Event):
    """An LLM judge's verdict on one answer (faithfulness) or a pair (preference)."""

    judgement_id: Identifier
    request_id: Identifier
    event_time: Timestamp
    route: RouteName
    kind: Literal["faithfulness", "pairwise"]
    #: The judged model (for pairwise: the candidate).
    model: ModelName
    arm: Literal["primary", "canary", "override", "shadow"]
    judge_model: ModelName
    #: Faithfulness on 1–5 (1 + 4 × supported/total); empty when no score could be given.
    score: Annotated[float, Field(ge=1, le=5, allow_inf_nan=False)] | None = None
    claims_total: Count32 | None = None
    claims_supported: Count32 | None = None
    #: Pairwise: which answer the judge preferred, after asking in both orders.
    preference: Literal["primary", "candidate", "tie"] | None = None
    #: Why there is no score (refusal, unusable judge output…).
    no_score_reason: ShortText | None = None
    judge_cost_usd: Usd = 0.0

    @model_validator(mode="after")
    def _verdict_or_reason(self) -> Self:
        verdict = self.score if self.kind == "faithfulness" else self.preference
        if verdict is None and not self.no_score_reason:
            raise ValueError(f"a {self.kind} judgement without a verdict needs no_score_reason")
        if (
            self.claims_total is not None
            and self.claims_supported is not None
            and self.claims_supported > self.claims_total
        ):
            raise ValueError("claims_supported cannot exceed claims_total")
        return self
