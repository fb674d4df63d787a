"""The online judge (``shadowlab run judge``): sampled LLM-as-judge verdicts to ``llm.judgements``.

One consumer group reads ``llm.requests`` and ``llm.shadow``:

- **faithfulness** of canary-arm requests, and of primary-arm requests as the baseline, at
  ``judge.sample_rate`` (the canary faithfulness gate compares the two arms);
- **pairwise preference** of each candidate's shadow answer against the primary answer, at
  ``judge.pairwise_sample_rate``. The primary answer and the context come with the request
  and the candidate's answer with the shadow result; whichever is consumed first waits in
  memory (:class:`~processors.judge.pending.PendingPairs`, bounded, with a TTL). A started
  role rebuilds the pairs that were waiting from the last ``judge.rebuild_tail`` events it
  had consumed on each partition (:meth:`JudgeRole.rebuild_pending`).

Sampling is decided by a hash of the request id (a redelivered event gets the same decision);
each kind is judged only while the route is in one of its stages (``faithfulness_stages``,
default canary; ``pairwise_stages``, default shadow and canary; a route without flags:
always). Judge spend is capped per hour (``judge.max_usd_per_hour``, the shadow role's
sliding window: each judgement reserves its expected cost; past the cap judging is sampled
down, counted as ``budget_usd``). Offsets are committed only after a batch's judgements
were delivered (at-least-once); a judgement's id is ``request_id:kind:model``, so a
redelivered event gives the same id and ClickHouse keeps one row. Judgements already paid
for are remembered (``dedupe_window``) and not asked again. Malformed events go to
``<topic>.dlq`` with the error.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from confluent_kafka import Consumer, Message, Producer

from processors.budget import RecentPairs, SpendWindow, replay_candidates, sampled
from processors.clients import model_client
from processors.judge.calls import reason_code
from processors.judge.faithfulness import FaithfulnessVerdict, judge_faithfulness, precheck
from processors.judge.pairwise import PairwiseVerdict, judge_pairwise, near_identical
from processors.judge.pending import PendingPairs, PendingRequest
from processors.judge.prompts import (
    claims_messages,
    pairwise_messages,
    verify_messages,
)
from processors.offsets import consumed_tail
from schemas import EventValidationError, Judgement, RequestEvent, ShadowResult
from shadowlab.core.errors import ConfigError, EventTimeOutOfBandError, ShadowlabError
from shadowlab.core.kafka import (
    BatchCounters,
    BatchLoop,
    BatchRole,
    consumer_config,
    dead_letter_of,
    produce_dead_letter,
    produce_or_report,
    producer_config,
)
from shadowlab.core.settings import JudgeSettings, Settings

log = logging.getLogger(__name__)

#: The request arms whose faithfulness is judged: the canary, and the primary as baseline.
JUDGED_ARMS = ("canary", "primary")

Kind = Literal["faithfulness", "pairwise"]
_IDENTIFIER = re.compile(r"^[\x21-\x7e]{1,128}$")


def judge_sampled(request_id: str, kind: Kind, rate: float) -> bool:
    """Whether ``request_id`` is judged for ``kind`` at ``rate`` (deterministic)."""
    return sampled(request_id, f"judge.{kind}", rate)


def judgement_id(request_id: str, kind: Kind, model: str) -> str:
    """The judgement's id: ``request_id:kind:model``, the same on every redelivery.

    When that is not a valid identifier (over 128 characters, or a model name with spaces),
    the model part becomes a hash of the whole, still deterministic.
    """
    plain = f"{request_id}:{kind}:{model}"
    if _IDENTIFIER.match(plain):
        return plain
    digest = hashlib.blake2b(plain.encode(), digest_size=16).hexdigest()
    return f"{request_id[:80]}:{kind}:{digest}"


def question_of(event: RequestEvent) -> str:
    """The request's question: the text of its last user message."""
    for message in reversed(event.request.messages):
        if message.role == "user":
            content = message.content
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def context_of(event: RequestEvent) -> tuple[str, ...]:
    """The documents the answer should be grounded in (``context_documents``)."""
    return tuple(doc.text for doc in event.context_documents)


@dataclass
class JudgeCounters(BatchCounters):
    """What the role did; logged every ``report_every_s`` and readable by tests and metrics."""

    judgements: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Faithfulness scores and pairwise preferences given, by kind.
    verdicts: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Judgements without a verdict, by reason code (``no_claims``, ``judge_error``…).
    no_score: collections.Counter[str] = field(default_factory=collections.Counter)
    preferences: collections.Counter[str] = field(default_factory=collections.Counter)
    spend_usd: float = 0.0


@dataclass(frozen=True)
class _Job:
    kind: Kind
    request_id: str
    model: str
    #: faithfulness: the request; pairwise: the waiting request and the candidate's result.
    event: RequestEvent | None = None
    pair: tuple[PendingRequest, ShadowResult] | None = None
    #: Decided without calling the judge (cost 0, not held back by the budget).
    free: bool = False


class JudgeRole(BatchRole):
    """Runs the judge loop until :meth:`stop` (in its own thread or ``asyncio.run``).

    Args:
        settings: ``judge`` (model, rates, budget), models, routes, topics.
        connection: librdkafka connection config.
        stage_of: the route's rollout stage, when routing flags are known (``None``: no
            flags for the route, judge it).

    Raises:
        ConfigError: ``judge.model`` is not set or not a configured model, or its API key
            variable is missing.
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
        self.cfg: JudgeSettings = settings.judge
        if self.cfg.model is None:
            raise ConfigError(
                "the judge role needs a judge model: set judge.model (SHADOWLAB_JUDGE__MODEL) "
                "to one of `models`"
            )
        self.endpoint = settings.model(self.cfg.model)
        self.counters = JudgeCounters()
        self._client = model_client(self.endpoint, max_retries=self.cfg.max_retries)
        self._connection = dict(connection)
        self._stage_of = stage_of
        self._report_every_s = report_every_s
        self._routes = {route.name: route for route in settings.routes}
        self._spend = SpendWindow(self.cfg.max_usd_per_hour) if self.cfg.max_usd_per_hour else None
        self._pending = PendingPairs(self.cfg.pending_ttl_s, self.cfg.pending_limit)
        self._judged = RecentPairs(self.cfg.dedupe_window)
        self._costs: dict[str, list[float]] = {"faithfulness": [0.0, 0], "pairwise": [0.0, 0]}
        self._last_warning = -1e9

    @property
    def pending(self) -> int:
        """Requests and results waiting for their other half."""
        return len(self._pending)

    async def run_async(self) -> None:
        """The loop: consume a batch, judge what is sampled, deliver, commit, repeat."""
        topics = self.settings.topics
        consumer = Consumer(consumer_config(self._connection, self.cfg.group_id))
        producer = Producer(producer_config(self._connection))
        consumer.subscribe([topics.requests, topics.shadow])
        self._consumer = consumer
        limit = asyncio.Semaphore(self.cfg.concurrency)
        try:
            waiting = await asyncio.to_thread(self.rebuild_pending)
            log.info("judge: %d requests and results waiting for their other half", waiting)
        except ShadowlabError as exc:  # a smaller sample, not a stop
            log.warning("judge: could not rebuild the waiting pairs (%s); starting with none", exc)

        async def process(batch: list[Message]) -> None:
            jobs = self._plan(batch, producer)
            await asyncio.gather(*(self._judge(job, r, producer, limit) for job, r in jobs))

        loop = BatchLoop("judge", consumer, producer, self._stop, self.cfg.batch_size, "judgements")
        self._batch_loop = loop
        try:
            await loop.run(
                process,
                idle=lambda: self._pending.expire(time.monotonic()),
                report=self.report,
                report_every_s=self._report_every_s,
            )
        finally:
            consumer.close()
            producer.flush(10)
            await self._client.close()

    # -- planning: what to judge (synchronous, in batch order) -------------------------------

    def _plan(self, batch: list[Message], producer: Producer) -> list[tuple[_Job, float]]:
        topics = self.settings.topics
        dlq_suffix = topics.dlq_suffix
        now = dt.datetime.now(dt.UTC)
        jobs: list[tuple[_Job, float]] = []
        for message in batch:
            self.counters.consumed += 1
            topic = message.topic()
            try:
                event: RequestEvent | ShadowResult
                if topic == topics.requests:
                    event = RequestEvent.from_json(message.value() or b"")
                else:
                    event = ShadowResult.from_json(message.value() or b"")
                self._band.admit(event.event_time, now)
                if isinstance(event, RequestEvent):
                    planned = self._on_request(event)
                else:
                    planned = self._on_result(event)
            except (EventValidationError, EventTimeOutOfBandError) as exc:
                self.counters.malformed += 1
                letter = dead_letter_of(message, role="judge", error=exc, dlq_suffix=dlq_suffix)
                if not produce_dead_letter(producer, letter):
                    self.counters.undeliverable += 1
                continue
            for job in planned:
                reserved = self._admit(job)
                if reserved is not None:
                    jobs.append((job, reserved))
        return jobs

    def _stage_allows(self, route: str, stages: tuple[str, ...]) -> bool:
        stage = self._stage_of(route) if self._stage_of else None
        return stage is None or stage in stages

    def _on_request(self, event: RequestEvent) -> list[_Job]:
        jobs: list[_Job] = []
        rid = event.request_id
        if event.arm in JUDGED_ARMS and event.status == "ok" and event.answer is not None:
            if not self._stage_allows(event.route, self.cfg.faithfulness_stages):
                self.counters.skipped["faithfulness.stage"] += 1
            elif not judge_sampled(rid, "faithfulness", self.cfg.sample_rate):
                self.counters.skipped["faithfulness.sampled_out"] += 1
            else:
                free = precheck(event.answer, context_of(event)) is not None
                jobs.append(_Job("faithfulness", rid, event.model, event=event, free=free))
        request = self._pairwise_request(event)
        if request is None:
            return jobs
        for result in self._pending.add_request(request, time.monotonic()):
            jobs.extend(self._pair(request, result))
        return jobs

    def _pairwise_request(self, event: RequestEvent) -> PendingRequest | None:
        """What pairwise judging keeps of ``event``, when it is sampled and in stage."""
        if not judge_sampled(event.request_id, "pairwise", self.cfg.pairwise_sample_rate):
            return None
        if not self._stage_allows(event.route, self.cfg.pairwise_stages):
            return None
        route = self._routes.get(event.route)
        stage = self._stage_of(event.route) if self._stage_of else None
        wanted, _ = replay_candidates(event, list(route.candidates) if route else [], stage)
        return PendingRequest(
            request_id=event.request_id,
            route=event.route,
            event_time=event.event_time,
            question=question_of(event),
            context=context_of(event),
            answer=event.answer if event.status == "ok" and event.answer is not None else "",
            primary_model=event.model,
            expected=frozenset(c.model for c in wanted),
            primary_ok=event.status == "ok" and event.answer is not None,
        )

    def rebuild_pending(self) -> int:
        """Rebuild the pairs that were waiting when the role last stopped; return how many.

        The last ``judge.rebuild_tail`` events before the group's committed offset of every
        partition of both topics were consumed already: a pair whose two halves are both
        there was judged then (it is marked judged, not asked again), and a half whose other
        half is not there is waiting again, as it was.
        """
        topics = (self.settings.topics.requests, self.settings.topics.shadow)
        now = time.monotonic()
        for raw in consumed_tail(
            self._connection, self.cfg.group_id, topics, self.cfg.rebuild_tail
        ):
            model = RequestEvent if raw.topic == topics[0] else ShadowResult
            try:
                event = model.from_json(raw.value or b"")
            except EventValidationError:
                continue  # dead-lettered when it was consumed
            if isinstance(event, RequestEvent):
                request = self._pairwise_request(event)
                paired = self._pending.add_request(request, now) if request is not None else []
                for result in paired:
                    self._judged.add((result.request_id, f"pairwise:{result.candidate}"))
            elif judge_sampled(
                event.request_id, "pairwise", self.cfg.pairwise_sample_rate
            ) and self._pending.add_result(event, now):
                self._judged.add((event.request_id, f"pairwise:{event.candidate}"))
        return len(self._pending)

    def _on_result(self, result: ShadowResult) -> list[_Job]:
        if not judge_sampled(result.request_id, "pairwise", self.cfg.pairwise_sample_rate):
            self.counters.skipped["pairwise.sampled_out"] += 1
            return []
        if not self._stage_allows(result.route, self.cfg.pairwise_stages):
            self.counters.skipped["pairwise.stage"] += 1
            return []
        request = self._pending.add_result(result, time.monotonic())
        return self._pair(request, result) if request is not None else []

    def _pair(self, request: PendingRequest, result: ShadowResult) -> list[_Job]:
        if not request.primary_ok or result.status != "ok" or result.answer is None:
            self.counters.skipped["pairwise.not_both_ok"] += 1
            return []
        free = near_identical(request.answer, result.answer, self.cfg.near_identical_f1)
        job = _Job("pairwise", request.request_id, result.candidate, pair=(request, result))
        return [dataclasses.replace(job, free=True) if free else job]

    def _admit(self, job: _Job) -> float | None:
        """Reserve the job's expected cost; None when it is a duplicate or over budget."""
        key = (job.request_id, f"{job.kind}:{job.model}")
        if key in self._judged:
            self.counters.skipped[f"{job.kind}.duplicate"] += 1
            return None
        reserved = 0.0 if job.free else self._estimate(job)
        now = time.monotonic()
        if self._spend is not None and not job.free:
            if not self._spend.allows(now):
                self.counters.skipped[f"{job.kind}.budget_usd"] += 1
                if now - self._last_warning > 60:
                    self._last_warning = now
                    log.warning(
                        "judge %s is over its budget of $%g/hour: sampling down",
                        self.endpoint.name,
                        self._spend.cap_usd,
                    )
                return None
            self._spend.add(now, reserved)
        self._judged.add(key)
        return reserved

    def _estimate(self, job: _Job) -> float:
        """Expected cost of ``job``: the mean so far, else from the prompts' sizes."""
        total, n = self._costs[job.kind]
        if n:
            return total / n
        if job.event is not None:
            answer = job.event.answer or ""
            context = context_of(job.event)
            chars = sum(
                len(str(m["content"]))
                for m in [
                    *claims_messages(question_of(job.event), answer),
                    *verify_messages(context, [answer]),
                ]
            )
            return self.endpoint.cost(chars / 4, len(answer) / 2 + 40)
        assert job.pair is not None  # noqa: S101 - a pairwise job always has its pair
        request, result = job.pair
        messages = pairwise_messages(
            request.question, request.context, request.answer, result.answer or ""
        )
        chars = sum(len(m["content"]) for m in messages)
        return self.endpoint.cost(2 * chars / 4, 2 * 30)

    # -- judging (concurrent) ----------------------------------------------------------------

    async def _judge(
        self, job: _Job, reserved: float, producer: Producer, limit: asyncio.Semaphore
    ) -> None:
        async with limit:
            self.counters.in_flight += 1
            try:
                if job.kind == "faithfulness":
                    judgement, cost = await self._faithfulness(job)
                else:
                    judgement, cost = await self._pairwise(job)
            finally:
                self.counters.in_flight -= 1
        if self._spend is not None and not job.free:
            self._spend.add(time.monotonic(), cost - reserved)
        if cost > 0:
            self._costs[job.kind][0] += cost
            self._costs[job.kind][1] += 1
        self.counters.spend_usd += cost
        self.counters.judgements[job.kind] += 1
        if judgement.no_score_reason is not None:
            self.counters.no_score[reason_code(judgement.no_score_reason)] += 1
        else:
            self.counters.verdicts[job.kind] += 1
        if judgement.preference is not None:
            self.counters.preferences[judgement.preference] += 1
        topic, what = (
            self.settings.topics.judgements,
            f"the {job.kind} judgement of {job.request_id}",
        )
        if not produce_or_report(producer, topic, judgement.to_json(), job.request_id, what=what):
            self.counters.undeliverable += 1  # logged; the role goes on
        producer.poll(0)

    async def _faithfulness(self, job: _Job) -> tuple[Judgement, float]:
        event = job.event
        assert event is not None  # noqa: S101 - a faithfulness job always has its request
        verdict: FaithfulnessVerdict = await judge_faithfulness(
            self._client,
            self.endpoint,
            question=question_of(event),
            answer=event.answer or "",
            context=list(context_of(event)),
        )
        judgement = Judgement.parse(
            {
                "judgement_id": judgement_id(event.request_id, "faithfulness", event.model),
                "request_id": event.request_id,
                "event_time": event.event_time,
                "route": event.route,
                "kind": "faithfulness",
                "model": event.model,
                "arm": event.arm,
                "judge_model": self.endpoint.name,
                "score": verdict.score,
                "claims_total": verdict.claims_total,
                "claims_supported": verdict.claims_supported,
                "no_score_reason": verdict.no_score_reason,
                "judge_cost_usd": verdict.cost_usd,
            }
        )
        return judgement, verdict.cost_usd

    async def _pairwise(self, job: _Job) -> tuple[Judgement, float]:
        assert job.pair is not None  # noqa: S101 - a pairwise job always has its pair
        request, result = job.pair
        verdict: PairwiseVerdict = await judge_pairwise(
            self._client,
            self.endpoint,
            question=request.question,
            context=request.context,
            primary=request.answer,
            candidate=result.answer or "",
            near_identical_f1=self.cfg.near_identical_f1,
        )
        judgement = Judgement.parse(
            {
                "judgement_id": judgement_id(request.request_id, "pairwise", result.candidate),
                "request_id": request.request_id,
                "event_time": request.event_time,
                "route": request.route,
                "kind": "pairwise",
                "model": result.candidate,
                "arm": "shadow",
                "judge_model": self.endpoint.name,
                "preference": verdict.preference,
                "no_score_reason": verdict.no_score_reason,
                "judge_cost_usd": verdict.cost_usd,
            }
        )
        return judgement, verdict.cost_usd

    # -- the rest ----------------------------------------------------------------------------

    def report(self) -> None:
        """Log one line: consumed, judgements, verdicts, no-score reasons, spend, skips."""
        c = self.counters
        log.info(
            "judge: consumed %d, judgements %s, verdicts %s, no score %s, preferences %s, "
            "spend $%.4f, in flight %d, waiting pairs %d, malformed %d, skipped %s",
            c.consumed,
            dict(c.judgements) or "-",
            dict(c.verdicts) or "-",
            dict(c.no_score) or "-",
            dict(c.preferences) or "-",
            c.spend_usd,
            c.in_flight,
            len(self._pending),
            c.malformed,
            dict(c.skipped) or "-",
        )
