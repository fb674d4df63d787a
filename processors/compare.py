"""Pure comparison of a primary answer with a candidate answer.

Everything here is a function of its arguments (no I/O, no clock), so the join role is a thin
shell around it and these functions are tested on their own:

- :func:`token_f1`: SQuAD-style normalised token F1 (lower case, punctuation and articles
  removed, whitespace collapsed), symmetric, 1.0 for equal texts.
- :func:`is_refusal`: the answer declines the task ("I can't help with that…").
- :func:`json_valid`: the answer parses as JSON (only asked when the request wanted JSON).
- :func:`schema_valid`: the answer parses and matches the request's ``json_schema``
  response format (JSON Schema, the draft the schema names, 2020-12 when it names none; no
  remote ``$ref`` is ever fetched).
- :func:`compare` / :func:`missing`: build the :class:`~schemas.Comparison` event.

The join keeps each side of a pair in its table while it waits for the other, so a side is
kept small whatever the answer's size: an :class:`AnswerDigest` holds the answer's first
:data:`ANSWER_HEAD_CHARS` characters (similarity is computed on those), its length (the
length ratio), the SHA-256 of its stripped text (exact match), and whether it is a refusal
and valid JSON (computed on the whole answer when it arrives). A candidate answer is
checked against the request's schema when both are at hand: always when the request came
first, and for an answer that waited for its request when it is no longer than its head.
"""

from __future__ import annotations

import collections
import datetime as dt
import functools
import hashlib
import json
import re
import string
from typing import Any, Self

import jsonschema
from pydantic import BaseModel, ConfigDict, field_validator
from referencing.exceptions import Unresolvable

from schemas import Comparison, RequestEvent, ShadowResult
from schemas.request import CallStatus

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_REFUSAL = re.compile(
    r"^\s*(?:i'?m sorry|i am sorry|sorry|unfortunately|as an ai)\b"
    r"|\bi (?:can(?:'|no)?t|cannot|won'?t|am (?:not able|unable)|'m (?:not able|unable)) "
    r"(?:help|assist|answer|provide|comply|do that|share|discuss)",
    re.IGNORECASE,
)


def normalise(text: str) -> list[str]:
    """Tokens of ``text`` after lower-casing, dropping punctuation and articles."""
    text = text.lower().translate(_PUNCTUATION)
    return _ARTICLES.sub(" ", text).split()


def token_f1(a: str, b: str) -> float:
    """Token-overlap F1 of two texts, 0–1 (1.0 when both normalise to nothing)."""
    ta, tb = normalise(a), normalise(b)
    if not ta or not tb:
        return 1.0 if ta == tb else 0.0
    common = sum((collections.Counter(ta) & collections.Counter(tb)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(ta), common / len(tb)
    return 2 * precision * recall / (precision + recall)


def is_refusal(answer: str) -> bool:
    """Whether the answer declines the task instead of answering it."""
    return _REFUSAL.search(answer[:400]) is not None


def json_valid(answer: str) -> bool:
    """Whether ``answer`` is one JSON value (surrounding whitespace allowed)."""
    try:
        json.loads(answer)
    except (ValueError, RecursionError):  # deep nesting is not valid JSON for us either
        return False
    return True


def wants_json(event: RequestEvent) -> bool:
    """Whether the request asked for a JSON ``response_format``."""
    fmt = event.request.response_format or {}
    return fmt.get("type") in ("json_object", "json_schema")


def response_schema(event: RequestEvent) -> dict[str, Any] | None:
    """The JSON Schema of the request's ``json_schema`` response format, if it asked for one."""
    fmt = event.request.response_format or {}
    if fmt.get("type") != "json_schema":
        return None
    schema = (fmt.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


@functools.lru_cache(maxsize=256)
def _validator(schema_text: str) -> Any:
    schema = json.loads(schema_text)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def schema_valid(answer: str | None, schema: dict[str, Any] | None) -> bool | None:
    """Whether ``answer`` is JSON matching ``schema``; None without either, or for a bad schema."""
    if answer is None or schema is None:
        return None
    try:
        document = json.loads(answer)
        validator = _validator(json.dumps(schema, sort_keys=True))
    except (ValueError, RecursionError):  # not JSON (or absurdly deep): it does not match
        return False
    except jsonschema.SchemaError:  # the request's schema itself is invalid: cannot tell
        return None
    try:
        return bool(validator.is_valid(document))
    except (RecursionError, Unresolvable, LookupError):
        return None  # an unresolvable $ref or a pathological schema: cannot tell


#: The most of an answer a waiting pair keeps: similarity is computed on these heads.
ANSWER_HEAD_CHARS = 16_384


class AnswerDigest(BaseModel):
    """What the comparison needs of an answer, bounded in size (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    head: str
    length: int
    stripped_sha256: str
    refusal: bool
    json_valid: bool

    @classmethod
    def of(cls, answer: str) -> Self:
        """The digest of ``answer``."""
        return cls(
            head=answer[:ANSWER_HEAD_CHARS],
            length=len(answer),
            stripped_sha256=hashlib.sha256(answer.strip().encode("utf-8", "replace")).hexdigest(),
            refusal=is_refusal(answer),
            json_valid=json_valid(answer),
        )


def tool_calls_digest(calls: list[dict[str, Any]] | None) -> str | None:
    """A digest of which tools were called, in order, and with what arguments (as JSON).

    Two calls agree when they name the same functions in the same order with arguments that
    are equal once parsed (``{"a": 1, "b": 2}`` and ``{"b":2,"a":1}`` agree); call ids do
    not count. Arguments that are not JSON are compared as text. ``None`` for no calls.
    """
    if not calls:
        return None
    canonical = []
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        try:
            parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
        except ValueError:
            parsed = arguments
        canonical.append([call.get("type", "function"), function.get("name"), parsed])
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(answer: str | None) -> AnswerDigest | None:
    return AnswerDigest.of(answer) if answer is not None else None


class _Side(BaseModel):
    """One side of a pair as the join keeps it while it waits for the other (small, JSON-able)."""

    model_config = ConfigDict(frozen=True)

    status: CallStatus
    latency_ms: float
    ttft_ms: float | None
    tokens: int | None
    cost_usd: float | None
    answer: AnswerDigest | None
    #: :func:`tool_calls_digest` of the call's tool calls (``None``: it called none).
    tool_calls: str | None = None

    @field_validator("answer", mode="before")
    @classmethod
    def _digest_a_whole_answer(cls, value: object) -> object:
        # an entry written before answers were kept as digests holds the whole answer
        return AnswerDigest.of(value) if isinstance(value, str) else value


def _side_fields(call: RequestEvent | ShadowResult) -> dict[str, Any]:
    return {
        "status": call.status,
        "latency_ms": call.latency_ms,
        "ttft_ms": call.ttft_ms,
        "tokens": (
            call.prompt_tokens + call.completion_tokens
            if call.prompt_tokens is not None and call.completion_tokens is not None
            else None
        ),
        "cost_usd": call.cost_usd,
        "answer": _digest(call.answer),
        "tool_calls": tool_calls_digest(call.tool_calls),
    }


class CandidateAnswer(_Side):
    """The part of a shadow result the join keeps while it waits for its request."""

    candidate: str

    @classmethod
    def of(cls, result: ShadowResult) -> Self:
        """The candidate side of ``result``."""
        return cls(candidate=result.candidate, **_side_fields(result))

    @classmethod
    def kept(cls, value: object) -> Self:
        """A held candidate from a table entry (an older entry holds the result's JSON)."""
        if isinstance(value, str):
            return cls.of(ShadowResult.from_json(value))
        return cls.model_validate(value)


class PrimaryAnswer(_Side):
    """The part of a request the join keeps while it waits for candidates."""

    request_id: str
    event_time: dt.datetime
    route: str
    model: str
    json_wanted: bool
    #: The request's ``json_schema`` response format, and whether the primary answer
    #: matches it (checked on the whole answer).
    response_schema: dict[str, Any] | None = None
    schema_valid: bool | None = None

    @classmethod
    def of(cls, event: RequestEvent) -> Self:
        """The primary side of ``event``."""
        schema = response_schema(event)
        return cls(
            request_id=event.request_id,
            event_time=event.event_time,
            route=event.route,
            model=event.model,
            json_wanted=wants_json(event),
            response_schema=schema,
            schema_valid=schema_valid(event.answer, schema) if event.status == "ok" else None,
            **_side_fields(event),
        )


def _primary_fields(primary: PrimaryAnswer) -> dict[str, object]:
    return {
        "request_id": primary.request_id,
        "event_time": primary.event_time,
        "route": primary.route,
        "primary_model": primary.model,
        "primary_status": primary.status,
        "primary_latency_ms": primary.latency_ms,
        "primary_ttft_ms": primary.ttft_ms,
        "primary_tokens": primary.tokens,
        "primary_cost_usd": primary.cost_usd,
        "primary_schema_valid": primary.schema_valid,
    }


def compare(primary: PrimaryAnswer, shadow: ShadowResult | CandidateAnswer) -> Comparison:
    """The joined comparison of ``primary`` and ``shadow`` (answer metrics when both answered).

    Metrics that need both answers (exact match, similarity, length ratio) are empty unless
    both calls ended ``ok`` with an answer; each side's refusal and JSON flags need only
    that side's answer.
    """
    candidate = shadow if isinstance(shadow, CandidateAnswer) else CandidateAnswer.of(shadow)
    whole = shadow.answer if isinstance(shadow, ShadowResult) else _whole(candidate.answer)
    a, b = primary.answer, candidate.answer
    both_ok = primary.status == "ok" and candidate.status == "ok"
    pair = (a, b) if both_ok and a is not None and b is not None else None
    ratio: float | None = None
    if pair is not None:
        ratio = (
            pair[1].length / pair[0].length
            if pair[0].length
            else (1.0 if not pair[1].length else None)
        )
    json_wanted = primary.json_wanted
    return Comparison(
        **_primary_fields(primary),  # type: ignore[arg-type]
        status="joined",
        candidate_model=candidate.candidate,
        candidate_status=candidate.status,
        candidate_latency_ms=candidate.latency_ms,
        candidate_ttft_ms=candidate.ttft_ms,
        candidate_tokens=candidate.tokens,
        candidate_cost_usd=candidate.cost_usd,
        exact_match=pair[0].stripped_sha256 == pair[1].stripped_sha256 if pair else None,
        similarity=token_f1(pair[0].head, pair[1].head) if pair is not None else None,
        length_ratio=min(ratio, 1e6) if ratio is not None else None,
        primary_refusal=a.refusal if a is not None else None,
        candidate_refusal=b.refusal if b is not None else None,
        primary_json_valid=a.json_valid if json_wanted and a is not None else None,
        candidate_json_valid=b.json_valid if json_wanted and b is not None else None,
        candidate_schema_valid=(
            schema_valid(whole, primary.response_schema) if candidate.status == "ok" else None
        ),
        tool_calls_match=(
            primary.tool_calls == candidate.tool_calls
            if both_ok and (primary.tool_calls or candidate.tool_calls)
            else None
        ),
    )


def _whole(digest: AnswerDigest | None) -> str | None:
    """The whole answer a digest holds, when its head is all of it."""
    return digest.head if digest is not None and digest.length == len(digest.head) else None


def missing(primary: PrimaryAnswer, candidate: str) -> Comparison:
    """The comparison for a candidate whose result never arrived within the join window."""
    return Comparison(
        **_primary_fields(primary),  # type: ignore[arg-type]
        status="missing",
        candidate_model=candidate,
        primary_refusal=primary.answer.refusal if primary.answer is not None else None,
    )
