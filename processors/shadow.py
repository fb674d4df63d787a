"""The shadow role: replay production requests against candidate models, emit ShadowResults.

The user's request path does no extra work: this role consumes ``llm.requests`` in a
consumer group, and for each candidate of the request's route (sampled, within budget)
replays the full request with ``openai.AsyncOpenAI`` and emits a :class:`ShadowResult` to
``llm.shadow``. Offsets are committed only after a batch's results were delivered
(at-least-once). A (request_id, candidate) pair already paid for is not replayed again: the
pairs are kept in memory, and a starting role first reads the tail of ``llm.shadow`` to learn
what was already delivered, so a restarted role does not pay twice either. Failures become
results with status ``error``/``timeout`` (error rate is a gate: they are never dropped); a
429 honours ``Retry-After`` and, unless configured as an error, is counted as skipped (the
join then reports the pair as ``missing``).
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import openai
from confluent_kafka import (
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from openai.lib.streaming.chat import ChatCompletionStreamState

from processors.budget import (
    RateLimit,
    RecentPairs,
    SpendWindow,
    TokenBucket,
    replay_candidates,
)
from processors.clients import model_client, reported_timings
from schemas import EventValidationError, RequestEvent, ShadowResult
from schemas.fast import BatchDecoder
from shadowlab.core.errors import EventTimeOutOfBandError
from shadowlab.core.headers import EVENT_TIME_HEADER
from shadowlab.core.kafka import (
    BatchCounters,
    BatchLoop,
    BatchRole,
    consumer_config,
    dead_letter_of,
    produce_dead_letter,
    produce_or_report,
    producer_config,
    sleep_unless_stopped,
)
from shadowlab.core.limits import cut_text
from shadowlab.core.openai_shapes import stream_answer, usage_fields
from shadowlab.core.retry_after import retry_after_s
from shadowlab.core.settings import CandidateConfig, ModelEndpoint, Settings, ShadowSettings

log = logging.getLogger(__name__)


@dataclass
class ShadowCounters(BatchCounters):
    """What the role did; logged every ``report_every_s`` and readable by tests and metrics."""

    results: int = 0
    by_status: collections.Counter[str] = field(default_factory=collections.Counter)
    spend_usd: collections.defaultdict[str, float] = field(
        default_factory=lambda: collections.defaultdict(float)
    )
    #: The most replays in flight to each candidate at once, so far.
    peak_in_flight: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Seconds replays waited for the endpoints' request and token limits.
    paced_s: float = 0.0
    #: Results whose usage the endpoint did not report (counted at their worst case).
    usage_unknown: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class _Candidate:
    config: CandidateConfig
    endpoint: ModelEndpoint
    client: openai.AsyncOpenAI
    bucket: TokenBucket | None
    spend: SpendWindow | None
    limit: asyncio.Semaphore
    #: The endpoint's request and token limits (shared by the candidates it serves).
    limits: tuple[RateLimit | None, RateLimit | None]
    in_flight: int = 0
    last_warning: float = -1e9
    cost_sum: float = 0.0
    cost_n: int = 0

    def estimate(self, event: RequestEvent) -> float:
        """Expected cost of replaying ``event``: the mean so far, else from its size."""
        if self.cost_n:
            return self.cost_sum / self.cost_n
        return self.endpoint.cost(*_size(event))


def _spent(result: ShadowResult, endpoint: ModelEndpoint, event: RequestEvent) -> float:
    """What a replay cost, for budgets: as reported, else its worst case (usage unknown)."""
    if result.cost_usd is not None:
        return result.cost_usd
    limit = event.request.max_completion_tokens or event.request.max_tokens
    return endpoint.worst_case_cost(_size(event)[0], limit)


def _size(event: RequestEvent) -> tuple[float, int]:
    """``event``'s prompt tokens (about 4 characters a token) and its completion limit."""
    chars = sum(len(str(m.content or "")) for m in event.request.messages)
    limit = event.request.max_completion_tokens or event.request.max_tokens
    return chars / 4, limit or 256


class ShadowRole(BatchRole):
    """Runs the replay loop until :meth:`stop` (in its own thread or ``asyncio.run``).

    Args:
        settings: routes (candidates, budgets), models (endpoints, prices), topics, shadow.
        connection: librdkafka connection config.
        stage_of: the route's rollout stage, when routing flags are known; requests are
            replayed only in ``shadow`` and ``canary`` (no flags: always).
    """

    def __init__(
        self,
        settings: Settings,
        connection: Mapping[str, str],
        *,
        stage_of: Callable[[str], str | None] | None = None,
        report_every_s: float = 10.0,
    ) -> None:
        super().__init__()
        self.settings = settings
        self._band = settings.admission.band()
        self.cfg: ShadowSettings = settings.shadow
        self.counters = ShadowCounters()
        self._connection = dict(connection)
        self._stage_of = stage_of
        self._report_every_s = report_every_s
        self._routes: dict[str, list[_Candidate]] = {}
        self._limits: dict[str, tuple[RateLimit | None, RateLimit | None]] = {}
        for route in settings.routes:
            self._routes[route.name] = [self._candidate(c) for c in route.candidates]
        self._paid = RecentPairs(self.cfg.dedupe_window)
        self._pending_pairs: list[tuple[str, str]] = []
        #: Pairs replayed by the batch in progress (a copy later in the batch is not paid).
        self._planned: set[tuple[str, str]] = set()

    def _candidate(self, config: CandidateConfig) -> _Candidate:
        endpoint = self.settings.model(config.model)
        client = model_client(endpoint, max_retries=0)  # the role retries itself
        limits = self._limits.setdefault(endpoint.name, (
            RateLimit(endpoint.max_rpm) if endpoint.max_rpm else None,
            RateLimit(endpoint.max_tpm) if endpoint.max_tpm else None,
        ))  # fmt: skip
        return _Candidate(
            config,
            endpoint,
            client,
            TokenBucket(config.max_rps) if config.max_rps else None,
            SpendWindow(config.max_usd_per_hour) if config.max_usd_per_hour else None,
            asyncio.Semaphore(config.max_concurrency),
            limits,
        )

    async def run_async(self) -> None:
        """The loop: consume a batch, replay it, deliver results, commit, repeat."""
        topics = self.settings.topics
        consumer = Consumer(
            consumer_config(self._connection, self.cfg.group_id, **{"session.timeout.ms": "6000"})
        )
        producer = Producer(producer_config(self._connection))
        consumer.subscribe([topics.requests])
        self._consumer = consumer
        limit = asyncio.Semaphore(self.cfg.concurrency)
        for candidates in self._routes.values():  # this loop's semaphores
            for candidate in candidates:
                candidate.limit = asyncio.Semaphore(candidate.config.max_concurrency)
        # results already on llm.shadow were paid for (by us before a crash, or by another
        # instance before a rebalance): learn them before replaying anything
        await asyncio.to_thread(scan_paid, self._connection, topics.shadow, self._paid, self._stop)
        loop = BatchLoop(
            "shadow", consumer, producer, self._stop, self.cfg.batch_size, "shadow results"
        )
        self._batch_loop = loop
        try:
            await loop.run(
                lambda batch: self._process(batch, producer, limit),
                delivered=self._remember_paid,
                report=self.report,
                report_every_s=self._report_every_s,
            )
        finally:
            consumer.close()
            producer.flush(10)
            for candidates in self._routes.values():
                for candidate in candidates:
                    await candidate.client.close()

    async def _process(
        self, batch: list[Message], producer: Producer, limit: asyncio.Semaphore
    ) -> None:
        dlq_suffix = self.settings.topics.dlq_suffix
        now = dt.datetime.now(dt.UTC)
        jobs: list[Any] = []
        offsets = arrival_offsets(batch, time.time(), self.cfg.pace_window_s)
        started = time.monotonic()
        for message, offset in zip(batch, offsets, strict=True):
            self.counters.consumed += 1
            try:
                event = RequestEvent.from_json(message.value() or b"")
                self._band.admit(event.event_time, now)
            except (EventValidationError, EventTimeOutOfBandError) as exc:
                self.counters.malformed += 1
                letter = dead_letter_of(message, role="shadow", error=exc, dlq_suffix=dlq_suffix)
                if not produce_dead_letter(producer, letter):
                    self.counters.undeliverable += 1
                continue
            jobs.extend(
                self._replay(event, c, reserved, producer, limit, start_at=started + offset)
                for c, reserved in self._plan(event)
            )
        await asyncio.gather(*jobs)
        self._planned.clear()

    def _plan(self, event: RequestEvent) -> list[tuple[_Candidate, float]]:
        """Which candidates replay ``event`` now (each skip counted with its reason)."""
        candidates = {c.config.model: c for c in self._routes.get(event.route, [])}
        stage = self._stage_of(event.route) if self._stage_of else None
        wanted, skipped = replay_candidates(event, [c.config for c in candidates.values()], stage)
        self.counters.skipped.update(skipped)
        now = time.monotonic()
        chosen: list[tuple[_Candidate, float]] = []
        for config in wanted:
            candidate = candidates[config.model]
            name = config.model
            reason = None
            if (event.request_id, name) in self._paid or (event.request_id, name) in self._planned:
                reason = "already_paid"  # before, or earlier in this batch
            elif candidate.spend is not None and not candidate.spend.allows(now):
                reason = "budget_usd"
            elif candidate.bucket is not None and not candidate.bucket.take(now):
                reason = "budget_rps"
            if reason is None:
                self._planned.add((event.request_id, name))
                if candidate.spend is not None:  # reserve now: the batch runs concurrently
                    candidate.spend.add(now, candidate.estimate(event))
                chosen.append((candidate, candidate.estimate(event)))
                continue
            self.counters.skipped[reason] += 1
            if reason.startswith("budget") and now - candidate.last_warning > 60:
                candidate.last_warning = now
                log.warning(
                    "candidate %s is over its %s budget: sampling down",
                    name,
                    reason.removeprefix("budget_"),
                )
        return chosen

    async def _replay(
        self,
        event: RequestEvent,
        candidate: _Candidate,
        reserved: float,
        producer: Producer,
        limit: asyncio.Semaphore,
        *,
        start_at: float,
    ) -> None:
        await sleep_unless_stopped(start_at - time.monotonic(), self._stop)  # arrival pace
        async with candidate.limit, limit:
            await self._wait_for_limits(candidate, event)
            name = candidate.config.model
            self.counters.in_flight += 1
            candidate.in_flight += 1
            peak = self.counters.peak_in_flight
            peak[name] = max(peak[name], candidate.in_flight)
            try:
                result = await replay(
                    candidate.client, candidate.endpoint, event, self.cfg, self._stop
                )
            finally:
                self.counters.in_flight -= 1
                candidate.in_flight -= 1
        actual = 0.0 if result is None else _spent(result, candidate.endpoint, event)
        if candidate.spend is not None:
            candidate.spend.add(time.monotonic(), actual - reserved)
        if result is None:
            self.counters.skipped["rate_limited"] += 1
            return
        candidate.cost_sum += actual
        candidate.cost_n += 1
        self.counters.spend_usd[name] += actual
        if not result.usage_known:
            self.counters.usage_unknown[name] += 1
        self.counters.by_status[result.status] += 1
        self.counters.results += 1
        topic, value = self.settings.topics.shadow, result.to_json()
        what = f"the result of {event.request_id} for {name}"
        if not produce_or_report(producer, topic, value, event.request_id, what=what):
            self.counters.undeliverable += 1  # logged; the role goes on
            return
        producer.poll(0)
        self._pending_pairs.append((event.request_id, name))

    async def _wait_for_limits(self, candidate: _Candidate, event: RequestEvent) -> None:
        """Wait until the endpoint's request and token limits allow this call."""
        requests, tokens = candidate.limits
        now = time.monotonic()
        wait = max(
            requests.reserve(now) if requests else 0.0,
            tokens.reserve(now, sum(_size(event))) if tokens else 0.0,
        )
        if wait > 0:
            self.counters.paced_s += wait
            await sleep_unless_stopped(wait, self._stop)

    def _remember_paid(self) -> None:
        pairs, self._pending_pairs = self._pending_pairs, []
        for pair in pairs:
            self._paid.add(pair)

    def report(self) -> None:
        """Log one line: lag, consumed, results, in flight, spend, errors, skips."""
        c = self.counters
        spend = ", ".join(f"{m} ${usd:.4f}" for m, usd in sorted(c.spend_usd.items())) or "-"
        log.info(
            "shadow: lag %s, consumed %d, results %d (%s), in flight %d, malformed %d, "
            "spend %s, skipped %s",
            self.lag(),
            c.consumed,
            c.results,
            dict(c.by_status),
            c.in_flight,
            c.malformed,
            spend,
            dict(c.skipped) or "-",
        )


#: The fields of a shadow result that say what was paid for.
_PAID_KEY = ("request_id", "candidate")


def scan_paid(
    connection: Mapping[str, str], topic: str, pairs: RecentPairs, stop: threading.Event
) -> int:
    """Add the (request_id, candidate) pairs of the last results on ``topic`` to ``pairs``.

    Reads each partition's tail (``pairs.capacity`` results in all, at least) up to its end.
    Returns the number of results read.
    """
    consumer = Consumer(
        {
            **consumer_config(connection, f"shadow-scan-{uuid.uuid4().hex}"),
            "enable.partition.eof": "true",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        per_partition = pairs.capacity // max(1, len(partitions)) + 1
        assignment = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            assignment.append(TopicPartition(topic, p, max(low, high - per_partition)))
        consumer.assign(assignment)
        at_end: set[int] = set()
        read = 0
        decoder = BatchDecoder(ShadowResult)  # the shared decoder: any input decodes or fails
        while len(at_end) < len(partitions) and not stop.is_set():
            values: list[bytes] = []
            for message in consumer.consume(1000, timeout=0.5):
                error = message.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition() or 0)
                    continue
                at_end.discard(message.partition() or 0)
                values.append(message.value() or b"")
            # what does not decode is the sink's to dead-letter; here it was never paid for
            decoded = decoder.decode(values)
            columns = [
                decoded.columns[decoded.fields.index(f)] for f in ("request_id", "candidate")
            ]
            for pair in zip(*columns, strict=True):
                pairs.add(pair)
            read += decoded.count
        return read
    finally:
        consumer.close()


async def replay(
    client: openai.AsyncOpenAI,
    endpoint: ModelEndpoint,
    event: RequestEvent,
    cfg: ShadowSettings,
    stop: threading.Event | None = None,
) -> ShadowResult | None:
    """Replay ``event`` against ``endpoint``; None when rate limited past what is honoured."""
    kwargs = sent_parameters(event)
    model = endpoint.upstream_name or endpoint.name
    # the original event time: lets a simulator replay drift exactly as live traffic saw it
    headers = {EVENT_TIME_HEADER: event.event_time.isoformat()}
    attempt = 0
    while True:
        attempt += 1
        started = time.perf_counter()
        outcome = await stream_call(client, model, kwargs, headers, started,
                                    deadline_s=endpoint.timeout_s)  # fmt: skip
        outcome["answer"] = cut_text(outcome["answer"], cfg.max_answer_chars)
        latency_ms = outcome["reported_ms"] or (time.perf_counter() - started) * 1000
        error = outcome.get("error")
        if error is None and latency_ms > endpoint.timeout_s * 1000:
            # a time-compressing simulator's call that took, in its time, past the deadline
            error = CallDeadlineExceededError(endpoint.timeout_s)
        if error is None:
            return _result(event, endpoint, attempt, latency_ms, outcome, "ok", None)
        if isinstance(error, openai.APITimeoutError | CallDeadlineExceededError):
            latency_ms = min(latency_ms, endpoint.timeout_s * 1000)
            return _result(
                event, endpoint, attempt, latency_ms, outcome, "timeout", type(error).__name__
            )
        retry_in = _retry_in(error, attempt, cfg)
        if retry_in is not None:
            await sleep_unless_stopped(retry_in, stop)
            continue
        if isinstance(error, openai.RateLimitError) and not cfg.rate_limit_is_error:
            return None
        return _result(event, endpoint, attempt, latency_ms, outcome, "error", type(error).__name__)


def sent_parameters(event: RequestEvent) -> dict[str, Any]:
    """The recorded request's messages and parameters as the service sent them.

    The named ones (tools, tool_choice, response_format, seed, stop, limits…) and every other
    parameter it recorded (``other_params``: ``n``, ``presence_penalty``…), same semantics.
    A Responses-API request is replayed in its chat form (``api`` and ``responses_params``,
    the parameters with no chat equivalent, are the record's, not the request's).
    """
    kwargs = event.request.model_dump(exclude_none=True)
    kwargs.update(kwargs.pop("other_params", None) or {})
    kwargs.pop("api", None)
    kwargs.pop("responses_params", None)
    return kwargs


def arrival_offsets(batch: list[Message], now_s: float, window_s: float) -> list[float]:
    """Seconds after the batch starts at which each message's replays start.

    Each message's Kafka timestamp (when its request was produced) relative to the batch's
    first: live traffic is replayed at the pace it arrived. All zeros when pacing is off
    (``window_s == 0``), when a timestamp is missing, or when the newest message is older
    than ``window_s`` (a backlog: replayed as fast as the limits allow).
    """
    stamps = [m.timestamp()[1] / 1000 if m.timestamp()[0] else math.nan for m in batch]
    if not stamps or window_s <= 0 or any(math.isnan(t) for t in stamps):
        return [0.0] * len(batch)
    if now_s - max(stamps) > window_s:
        return [0.0] * len(batch)
    first = min(stamps)
    return [min(t - first, window_s) for t in stamps]


def _retry_in(error: Exception, attempt: int, cfg: ShadowSettings) -> float | None:
    """Seconds to wait before the next attempt, or None to stop retrying."""
    if attempt >= cfg.max_attempts:
        return None
    if isinstance(error, openai.RateLimitError):
        asked = retry_after_s(error.response.headers, now=dt.datetime.now(dt.UTC))
        wait = cfg.backoff_base_s * 2 ** (attempt - 1) if asked is None else asked
        return wait if wait <= cfg.max_retry_after_s else None
    retryable = isinstance(error, openai.APIConnectionError) or (
        isinstance(error, openai.APIStatusError) and error.status_code >= 500
    )
    return cfg.backoff_base_s * 2 ** (attempt - 1) if retryable else None


class CallDeadlineExceededError(TimeoutError):
    """A model call that did not finish within its endpoint's ``timeout_s``, whole."""

    def __init__(self, deadline_s: float) -> None:
        super().__init__(f"the call did not finish within its {deadline_s:g} s deadline")
        self.deadline_s = deadline_s


async def stream_call(
    client: openai.AsyncOpenAI,
    model: str,
    kwargs: dict[str, Any],
    headers: dict[str, str],
    started: float,
    *,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """One streamed call: answer, TTFT, usage and a simulator's timings, or the exception.

    Returns a dict with ``answer``, ``ttft_ms``, ``prompt_tokens``, ``completion_tokens``,
    ``reported_ms`` (a time-compressing simulator's latency, else None) and, on failure,
    ``error`` (the ``openai`` exception, or :class:`CallDeadlineExceededError`). ``started``
    is the ``perf_counter`` of the call. ``deadline_s`` bounds the *whole* call, first byte to
    last chunk: the client's own timeout only bounds each wait between reads, so a server
    trickling a token every half second would otherwise never time out.
    """
    try:
        async with asyncio.timeout(deadline_s):
            return await _stream_call(client, model, kwargs, headers, started)
    except TimeoutError:
        return {**_no_outcome(), "error": CallDeadlineExceededError(deadline_s or 0.0)}


def _no_outcome() -> dict[str, Any]:
    """A call's outcome before anything came back."""
    return {"answer": None, "ttft_ms": None, "prompt_tokens": None, "completion_tokens": None,
            "reported_ms": None}  # fmt: skip


async def _stream_call(
    client: openai.AsyncOpenAI,
    model: str,
    kwargs: dict[str, Any],
    headers: dict[str, str],
    started: float,
) -> dict[str, Any]:
    out = _no_outcome()
    completions: Any = client.chat.completions
    try:
        stream = await completions.create(
            model=model,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
            **kwargs,
        )
        reported_ms, reported_ttft_ms = reported_timings(stream.response.headers)
        state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()  # the SDK's
        async for chunk in stream:
            state.handle_chunk(chunk)
            if chunk.usage is not None:
                out["prompt_tokens"] = chunk.usage.prompt_tokens
                out["completion_tokens"] = chunk.usage.completion_tokens
            delta = chunk.choices[0].delta if chunk.choices else None
            said = delta is not None and bool(delta.content or delta.tool_calls)
            if said and out["ttft_ms"] is None:  # the first token: text or a tool call
                out["ttft_ms"] = (time.perf_counter() - started) * 1000
        out["answer"], out["tool_calls"] = stream_answer(state)
        if reported_ms is not None:  # a time-compressing simulator: its simulated timings
            out["reported_ms"], out["ttft_ms"] = reported_ms, reported_ttft_ms
    except openai.APIStatusError as exc:
        out["error"] = exc
        out["reported_ms"] = reported_timings(exc.response.headers)[0]
    except openai.OpenAIError as exc:
        out["error"] = exc
    return out


def _result(
    event: RequestEvent,
    endpoint: ModelEndpoint,
    attempts: int,
    latency_ms: float,
    outcome: dict[str, Any],
    status: str,
    error_type: str | None,
) -> ShadowResult:
    came_back = status == "ok" or outcome["ttft_ms"] is not None
    usage = usage_fields(outcome["prompt_tokens"], outcome["completion_tokens"], endpoint.cost,
                         came_back=came_back)  # fmt: skip
    return ShadowResult.parse(
        {
            "request_id": event.request_id,
            "event_time": event.event_time,
            "replayed_at": dt.datetime.now(dt.UTC),
            "route": event.route,
            "candidate": endpoint.name,
            "primary_model": event.model,
            "answer": outcome["answer"] if status == "ok" else None,
            "tool_calls": outcome.get("tool_calls") if status == "ok" else None,
            "latency_ms": min(latency_ms, 3_600_000.0),
            "ttft_ms": outcome["ttft_ms"],
            **usage,
            "status": status,
            "error_type": error_type,
            "attempts": attempts,
        }
    )
