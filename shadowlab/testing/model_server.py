"""An OpenAI-compatible model simulator: a test and demo double, never a real model.

``/v1/chat/completions`` (plain and ``stream=true``) and ``/v1/models``, served with aiohttp
to the real ``openai`` client. Each simulated model has a profile: latency (median and p95 of
a log-normal), rates of 500 errors, 429s (with ``Retry-After``) and hangs past the client's
timeout, answer length, and answer quality (the probability of answering correctly from the
context, and of adding an unsupported claim). Outcomes are deterministic for
(seed, model, request): the same request gets the same answer, latency and fate. How hard a
request is, is shared by all models: a model with a higher ``p_correct`` answers correctly
every request a lower one does.

System messages are the context; the last user message is the question. A correct answer is
the context sentence that best matches the question; a wrong one is a fixed evasive sentence;
an unfaithful one adds a claim found nowhere in the context.

A profile with ``judge: true`` answers the judge's prompts (:mod:`processors.judge.prompts`)
deterministically and meaningfully: the claims of an answer are its sentences (a refusal or
an empty answer has none); a claim is supported when its words (lower case, punctuation
dropped) appear in that order in the context's words; of two answers it prefers the one with
the larger share of supported claims (a tie when equal). Other prompts it answers like any
simulated model, and a model that is not a judge answers judge prompts with prose, as a
real model that ignores the format would.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import random
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from aiohttp import web
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from processors.compare import is_refusal
from processors.judge.prompts import TASK_CLAIMS, TASK_PAIRWISE, TASK_VERIFY, task_input
from shadowlab.core.errors import ConfigError
from shadowlab.core.headers import EVENT_TIME_HEADER, LATENCY_HEADER, TTFT_HEADER
from shadowlab.embedded.broker import free_port
from shadowlab.testing import sim_responses

WRONG_ANSWER = "I am not sure; it may depend on your plan, so please contact support."
UNSUPPORTED_CLAIM = "This was also confirmed by an independent audit in 2019."
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[a-z0-9]+")


class ProfileChange(BaseModel):
    """A change of a simulated model's behaviour from an event time on."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    set: dict[str, float]


class ModelProfile(BaseModel):
    """How one simulated model behaves."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    latency_median_ms: Annotated[float, Field(gt=0)] = 500.0
    latency_p95_ms: Annotated[float, Field(gt=0)] = 1000.0
    #: Time to first token as a share of the latency.
    ttft_fraction: Annotated[float, Field(gt=0, le=1)] = 0.3
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    rate_limit_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    retry_after_s: Annotated[float, Field(ge=0)] = 1.0
    hang_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: How long a hang lasts (simulated seconds): longer than any client timeout.
    hang_s: Annotated[float, Field(gt=0)] = 600.0
    p_correct: Annotated[float, Field(ge=0, le=1)] = 0.9
    p_faithful: Annotated[float, Field(ge=0, le=1)] = 0.95
    #: Answer judge prompts as a judge (claims, verdicts, preferences) instead of as a model.
    judge: bool = False
    #: A position-biased judge: always prefers the answer shown first (for tests).
    judge_prefers_first: bool = False
    #: Share of requests offering ``tools`` that the model answers with a call to the first
    #: tool (arguments ``{"question": <the last user message>}``) instead of text.
    tool_call_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: False: the server sends no usage at all (no ``usage`` field, no usage chunk), as some
    #: gateways and self-hosted servers do.
    reports_usage: bool = True
    #: Drift: from each ``at`` (event time) on, these fields replace the profile's.
    changes: list[ProfileChange] = Field(default_factory=list)
    #: A daily cycle (relative amplitudes): latency × ``1 + daily_latency × s`` and error
    #: rate × ``1 + daily_errors × s``, ``s = cos(2π (hour - daily_peak_hour) / 24)`` of the
    #: request's UTC event time (1 at the peak hour, -1 twelve hours later).
    daily_latency: Annotated[float, Field(ge=0, lt=1)] = 0.0
    daily_errors: Annotated[float, Field(ge=0, le=1)] = 0.0
    daily_peak_hour: Annotated[float, Field(ge=0, lt=24)] = 0.0

    def at(self, when: dt.datetime) -> ModelProfile:
        """The profile in force at event time ``when``: its drift, then its daily cycle."""
        current = self
        for change in sorted(self.changes, key=lambda c: c.at):
            if change.at <= when:
                current = current.model_copy(update=change.set)
        if not (current.daily_latency or current.daily_errors):
            return current
        hour = when.astimezone(dt.UTC)
        s = math.cos(2 * math.pi * (hour.hour + hour.minute / 60 - current.daily_peak_hour) / 24)
        latency = 1 + current.daily_latency * s
        return current.model_copy(
            update={
                "latency_median_ms": current.latency_median_ms * latency,
                "latency_p95_ms": current.latency_p95_ms * latency,
                "error_rate": min(1.0, current.error_rate * (1 + current.daily_errors * s)),
            }
        )

    @property
    def sigma(self) -> float:
        """Log-normal shape giving the configured p95 (z = 1.645)."""
        return max(0.0, math.log(self.latency_p95_ms / self.latency_median_ms) / 1.645)


class SimulatorConfig(BaseModel):
    """The simulator's models, seed and time scale (0.01 = a 1 s latency sleeps 10 ms)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    time_scale: Annotated[float, Field(gt=0)] = 1.0
    models: list[ModelProfile]

    @classmethod
    def from_yaml(cls, path: Path) -> SimulatorConfig:
        """Load a simulator config file.

        Raises:
            ConfigError: the file is missing or invalid (naming the file and the field).
        """
        try:
            return cls.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ConfigError(f"simulator config {path} does not exist") from None
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"simulator config {path} is invalid: {exc}") from None

    def profile(self, name: str) -> ModelProfile | None:
        """Return the profile of model ``name``."""
        return next((m for m in self.models if m.name == name), None)


@dataclass(frozen=True)
class Outcome:
    """What happens to one request (all drawn from the request's own seed)."""

    kind: str  # "ok", "error", "rate_limited", "hang"
    latency_s: float
    ttft_s: float
    answer: str
    prompt_tokens: int
    completion_tokens: int
    #: A tool call instead of an answer: ``(function name, JSON arguments)``.
    tool_call: tuple[str, str] | None = None


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def decide(profile: ModelProfile, seed: int, request: dict[str, Any]) -> Outcome:
    """Draw the fate of ``request`` for ``profile``: pure and deterministic."""
    messages = request.get("messages") or []
    canonical = json.dumps(
        {k: request.get(k) for k in ("messages", "tools", "response_format", "seed")},
        sort_keys=True,
    )
    digest = hashlib.sha256(f"{seed}|{profile.name}|{canonical}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 - simulation
    draw = rng.random()
    kind = "ok"
    if draw < profile.error_rate:
        kind = "error"
    elif draw < profile.error_rate + profile.rate_limit_rate:
        kind = "rate_limited"
    elif draw < profile.error_rate + profile.rate_limit_rate + profile.hang_rate:
        kind = "hang"
    latency_ms = profile.latency_median_ms * math.exp(profile.sigma * rng.gauss(0.0, 1.0))
    context = " ".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    question = next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    answer = WRONG_ANSWER
    rng.random()  # the model's own draw (kept so the other draws stay as they were)
    if _difficulty(seed, canonical) < profile.p_correct:
        answer = _best_sentence(context, question) or WRONG_ANSWER
    if rng.random() >= profile.p_faithful:
        answer = f"{answer} {UNSUPPORTED_CLAIM}"
    task = task_input(messages) if profile.judge else None
    if task is not None:
        answer = judge_reply(task, prefers_first=profile.judge_prefers_first)
    prompt = " ".join(_text(m.get("content")) for m in messages)
    tool_call = None
    tools = request.get("tools") or []
    if tools and task is None and rng.random() < profile.tool_call_rate:
        name = str((tools[0].get("function") or {}).get("name", "tool"))
        tool_call = (name, json.dumps({"question": question}))
        answer = ""
    return Outcome(
        kind,
        latency_ms / 1000,
        latency_ms * profile.ttft_fraction / 1000,
        answer,
        _tokens(prompt),
        _tokens(answer or (tool_call[1] if tool_call else "")),
        tool_call,
    )


def _difficulty(seed: int, canonical: str) -> float:
    """How hard a request is, in [0, 1): the same for every model.

    A model answers correctly when this is below its ``p_correct``, so a better model gets a
    superset of a worse one's questions right, as models do on a golden set (hard questions
    are hard for all of them); independent draws would make two equal models disagree on
    ~2 p (1 − p) of the items.
    """
    digest = hashlib.sha256(f"{seed}|difficulty|{canonical}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _best_sentence(context: str, question: str) -> str:
    asked = set(_WORD.findall(question.lower()))
    sentences = [s.strip() for s in _SENTENCE.split(context) if s.strip()]
    if not sentences:
        return ""
    return max(sentences, key=lambda s: len(asked & set(_WORD.findall(s.lower()))))


def claims_of(answer: str) -> list[str]:
    """The simulated judge's claims of ``answer``: its sentences (none for a refusal)."""
    if is_refusal(answer):
        return []
    return [s.strip() for s in _SENTENCE.split(answer) if _WORD.search(s.lower())]


def _words(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def is_supported(claim: str, context: str) -> bool:
    """Whether ``context`` states ``claim``: its normalised words, in order, are in it."""
    words = _words(claim)
    return bool(words) and f" {words} " in f" {_words(context)} "


def supported_share(answer: str, context: str) -> float:
    """The share of ``answer``'s claims that ``context`` supports (0 without claims)."""
    claims = claims_of(answer)
    return sum(is_supported(c, context) for c in claims) / len(claims) if claims else 0.0


def judge_reply(task: dict[str, Any], *, prefers_first: bool = False) -> str:
    """The simulated judge's JSON reply to a judge ``task`` (see the module doc)."""
    documents = task.get("context") or []
    context = " ".join(str(d) for d in documents) if isinstance(documents, list) else str(documents)
    kind = task.get("task")
    if kind == TASK_CLAIMS:
        return json.dumps({"claims": claims_of(str(task.get("answer") or ""))})
    if kind == TASK_VERIFY:
        verdicts = []
        for claim in (str(c) for c in task.get("claims") or []):
            found = is_supported(claim, context)
            why = "stated in the context" if found else "not found in the context"
            verdicts.append({"claim": claim, "supported": found, "reason": why})
        return json.dumps({"verdicts": verdicts})
    if kind == TASK_PAIRWISE:
        a = supported_share(str(task.get("answer_a") or ""), context)
        b = supported_share(str(task.get("answer_b") or ""), context)
        preference = "A" if prefers_first or a > b else "B" if b > a else "tie"
        why = f"supported claims: A {a:.2f}, B {b:.2f}"
        return json.dumps({"preference": preference, "reason": why})
    raise ValueError(f"not a judge task: {kind!r}")


class _Server:
    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/responses", self.responses)
        return app

    async def models(self, _request: web.Request) -> web.Response:
        data = [
            {"id": m.name, "object": "model", "created": 0, "owned_by": "shadowlab-sim"}
            for m in self.config.models
        ]
        return web.json_response({"object": "list", "data": data})

    async def _read(
        self, request: web.Request
    ) -> tuple[dict[str, Any], ModelProfile] | web.Response:
        """The body and the model's profile in force, or the 400/404 to send."""
        self.requests += 1
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "invalid_request_error", "the body is not JSON")
        profile = self.config.profile(str(body.get("model")))
        if profile is None:
            return _error(404, "model_not_found", f"model {body.get('model')!r} is not simulated")
        return body, profile.at(_event_time(request))

    async def _fate(self, profile: ModelProfile, outcome: Outcome) -> web.Response | None:
        """The 429 or 500 of a request that fails (after its latency), None for one that answers."""
        scale = self.config.time_scale
        if outcome.kind == "hang":
            await asyncio.sleep(profile.hang_s * scale)
        if outcome.kind == "rate_limited":
            response = _error(429, "rate_limit_exceeded", "simulated rate limit")
            response.headers["Retry-After"] = f"{profile.retry_after_s:g}"
            return response
        if outcome.kind in ("error", "hang"):
            await asyncio.sleep(outcome.latency_s * scale)
            response = _error(500, "server_error", "simulated server error")
            response.headers.update(_timing_headers(outcome, scale))
            return response
        return None

    async def chat(self, request: web.Request) -> web.StreamResponse:
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        body, profile = read
        outcome = decide(profile, self.config.seed, body)
        failed = await self._fate(profile, outcome)
        if failed is not None:
            return failed
        scale = self.config.time_scale
        if body.get("stream"):
            if not profile.reports_usage:
                body = {**body, "stream_options": None}
            return await self._stream(request, body, outcome, scale)
        await asyncio.sleep(outcome.latency_s * scale)
        usage = {"usage": _usage(outcome)} if profile.reports_usage else {}
        return web.json_response(
            headers=_timing_headers(outcome, scale),
            data={
                "id": f"chatcmpl-sim-{self.requests}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": profile.name,
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "tool_calls" if outcome.tool_call else "stop",
                        "message": _message(outcome, self.requests),
                    }
                ],
                **usage,
            },
        )

    async def responses(self, request: web.Request) -> web.StreamResponse:
        """``/v1/responses`` (:mod:`shadowlab.testing.sim_responses`)."""
        read = await self._read(request)
        if isinstance(read, web.Response):
            return read
        body, profile = read
        try:
            chat = sim_responses.chat_body(body)
        except sim_responses.NoChatForm as why:
            return _error(400, "invalid_request_error", f"not simulated: {why}")
        outcome = decide(profile, self.config.seed, chat)
        failed = await self._fate(profile, outcome)
        if failed is not None:
            return failed
        scale = self.config.time_scale
        final = sim_responses.response_body(
            body, outcome, self.requests, usage=profile.reports_usage
        )
        if not body.get("stream"):
            await asyncio.sleep(outcome.latency_s * scale)
            return web.json_response(final, headers=_timing_headers(outcome, scale))
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **_timing_headers(outcome, scale)}
        )
        await response.prepare(request)
        return await sim_responses.stream_events(
            response, final, outcome, ttft_s=outcome.ttft_s * scale,
            rest_s=(outcome.latency_s - outcome.ttft_s) * scale,
        )  # fmt: skip

    async def _stream_tool_call(
        self,
        response: web.StreamResponse,
        body: dict[str, Any],
        base: dict[str, Any],
        outcome: Outcome,
        rest: float,
    ) -> web.StreamResponse:
        """A tool call streamed as deltas: the call's id and name, then its arguments in two."""
        assert outcome.tool_call is not None  # noqa: S101 - the caller checked
        name, arguments = outcome.tool_call
        half = len(arguments) // 2
        deltas = [
            {"role": "assistant", "content": None, "tool_calls": [{
                "index": 0, "id": f"call_sim_{self.requests}", "type": "function",
                "function": {"name": name, "arguments": ""}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[:half]}}]},
            {"tool_calls": [{"index": 0, "function": {"arguments": arguments[half:]}}]},
        ]  # fmt: skip
        for i, delta in enumerate(deltas):
            if i:
                await asyncio.sleep(rest / len(deltas))
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        return await _finish(response, body, base, outcome, "tool_calls")

    async def _stream(
        self, request: web.Request, body: dict[str, Any], outcome: Outcome, scale: float
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **_timing_headers(outcome, scale)}
        )
        await response.prepare(request)
        words = outcome.answer.split(" ")
        base = {
            "id": f"chatcmpl-sim-{self.requests}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body["model"],
        }
        await asyncio.sleep(outcome.ttft_s * scale)
        rest = (outcome.latency_s - outcome.ttft_s) * scale
        if outcome.tool_call is not None:
            return await self._stream_tool_call(response, body, base, outcome, rest)
        # compressed time reports its timings in headers: the words go out at once, then the
        # rest of the latency passes (a sleep per word would cost more than it simulates)
        paced = scale == 1.0
        for i, word in enumerate(words):
            if i and paced:
                await asyncio.sleep(rest / max(1, len(words) - 1))
            delta = {"content": word if i == 0 else f" {word}"}
            if i == 0:
                delta["role"] = "assistant"
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        if not paced:
            await asyncio.sleep(rest)
        return await _finish(response, body, base, outcome, "stop")


async def _finish(
    response: web.StreamResponse,
    body: dict[str, Any],
    base: dict[str, Any],
    outcome: Outcome,
    reason: str,
) -> web.StreamResponse:
    """End a stream: the finish reason, the usage chunk if asked for, ``[DONE]``."""
    final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}
    await response.write(f"data: {json.dumps(final)}\n\n".encode())
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**base, "choices": [], "usage": _usage(outcome)}
        await response.write(f"data: {json.dumps(usage)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _message(outcome: Outcome, number: int) -> dict[str, Any]:
    """The non-streamed assistant message: the answer, or the tool call."""
    if outcome.tool_call is None:
        return {"role": "assistant", "content": outcome.answer}
    name, arguments = outcome.tool_call
    call = {"id": f"call_sim_{number}", "type": "function",
            "function": {"name": name, "arguments": arguments}}  # fmt: skip
    return {"role": "assistant", "content": None, "tool_calls": [call]}


def _event_time(request: web.Request) -> dt.datetime:
    header = request.headers.get(EVENT_TIME_HEADER)
    if header:
        with contextlib.suppress(ValueError):
            parsed = dt.datetime.fromisoformat(header)
            if parsed.tzinfo is not None:
                return parsed
    return dt.datetime.now(dt.UTC)


def _timing_headers(outcome: Outcome, scale: float) -> dict[str, str]:
    """The simulated latency and TTFT, when time is compressed (else the wall clock is right)."""
    if scale == 1.0:
        return {}
    return {
        LATENCY_HEADER: f"{outcome.latency_s * 1000:.3f}",
        TTFT_HEADER: f"{outcome.ttft_s * 1000:.3f}",
    }


def _usage(outcome: Outcome) -> dict[str, int]:
    return {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
    }


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": code, "code": code, "param": None}},
        status=status,
    )


class Simulator:
    """The simulator on a loopback port, in a background thread (tests, demo, embedded use).

    ``base_url`` is what an ``openai.OpenAI(base_url=...)`` client takes.
    """

    def __init__(self, config: SimulatorConfig, host: str = "127.0.0.1", port: int = 0):
        self.config = config
        self.host = host
        self.port = port
        self._server = _Server(config)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="simulator", daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://host:port/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests_served(self) -> int:
        """Chat completion requests received so far."""
        return self._server.requests

    def start(self) -> Self:
        """Start serving; returns once the port is bound."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._server.app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        if self.port == 0:
            self.port = free_port(self.host)
        await web.TCPSite(self._runner, self.host, self.port).start()

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def serve(config: SimulatorConfig, host: str, port: int) -> None:
    """Serve in the foreground until interrupted (``shadowlab simulate``)."""
    web.run_app(_Server(config).app(), host=host, port=port, access_log=None, print=None)
