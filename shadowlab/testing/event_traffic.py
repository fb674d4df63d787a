"""Simulated production traffic: routed by a real Router, produced to Kafka, in event time.

Each chunk of event time is routed with the flags in force (so canary users follow the
controller's weights), and emits what the other roles would: requests, paired comparisons
(while a candidate is replayed), CSAT feedback and faithfulness judgements.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np
from confluent_kafka import Producer

from processors.gates.montecarlo import DailyCycle, ModelProfile
from producers.router import Router
from schemas import Comparison, Event, FeedbackEvent, Judgement, RequestEvent
from shadowlab.core.errors import UnknownRouteError
from shadowlab.core.kafka import producer_config
from shadowlab.core.settings import TopicSettings
from shadowlab.testing.helpers import wait_until

if TYPE_CHECKING:
    from processors.gates.role import GatesRole

#: A timed-out call waits this long before it fails.
TIMEOUT_S = 30.0
_ERROR_TYPES = {"error": "APIError", "timeout": "APITimeoutError"}
_REQUEST = {"messages": [{"role": "user", "content": "How long is the warranty?"}]}


class TrafficDriver:
    """Produces simulated traffic of one route, chunk by chunk of event time."""

    def __init__(
        self,
        kafka: Mapping[str, str],
        topics: TopicSettings,
        router: Router,
        route: str,
        *,
        rps: float,
        primary: ModelProfile,
        candidate: ModelProfile,
        seed: int = 0,
        feedback_rate: float = 0.3,
        judge_rate: float = 0.3,
        cycle: DailyCycle | None = None,
    ) -> None:
        self.topics, self.router, self.route, self.rps = topics, router, route, rps
        self.profiles = {"primary": primary, "candidate": candidate}
        self.feedback_rate, self.judge_rate = feedback_rate, judge_rate
        self.cycle = cycle or DailyCycle()
        self.rng = np.random.default_rng(seed)
        self.counts: Counter[str] = Counter()
        self._producer = Producer(producer_config(kafka, **{"linger.ms": "20"}))

    def _send(self, topic: str, key: str, event: Event) -> None:
        self._producer.produce(topic, key=key, value=event.to_json())
        self.counts[type(event).__name__] += 1
        if self.counts.total() % 2000 == 0:
            self._producer.poll(0)

    def _call(self, side: str, when: dt.datetime) -> tuple[float, str]:
        """One call's latency and status at event time ``when`` (its hour of the day)."""
        profile = self.profiles[side]
        s = self.cycle.at(when.hour + when.minute / 60)
        failures = max(0.0, 1 + self.cycle.failures * s)
        median = profile.latency_median_ms * max(0.05, 1 + self.cycle.latency * s)
        draw = self.rng.random()
        latency = float(self.rng.lognormal(math.log(median), profile.latency_sigma))
        if draw < profile.timeout_rate * failures:
            return TIMEOUT_S * 1000, "timeout"
        status = "error" if draw < (profile.timeout_rate + profile.error_rate) * failures else "ok"
        return round(latency, 3), status

    def chunk(self, start: dt.datetime, seconds: float) -> None:
        """Produce ``seconds`` of traffic starting at event time ``start``, then flush."""
        n = round(self.rps * seconds)
        for i in range(n):
            self._request(start + dt.timedelta(seconds=i / self.rps))
        if self._producer.flush(30) > 0:
            raise TimeoutError("traffic was not delivered to Kafka")

    def _request(self, event_time: dt.datetime) -> None:
        user = f"user-{int(self.rng.integers(1_000_000))}"
        assignment = self.router.choose(self.route, key=user)
        flags = self.router.flags(self.route)
        if flags is None:
            raise UnknownRouteError(f"route {self.route!r} has no flags")
        side = "candidate" if assignment.model == flags.canary else "primary"
        latency, status = self._call(side, event_time)
        request_id = uuid.uuid4().hex
        request = RequestEvent.parse(
            {
                "request_id": request_id, "event_time": event_time, "route": self.route,
                "user_key": user, "request": _REQUEST, "model": assignment.model,
                "arm": assignment.arm, "flags_version": assignment.flags_version,
                "latency_ms": latency, "status": status,
                "error_type": _ERROR_TYPES.get(status),
            }
        )  # fmt: skip
        self._send(self.topics.requests, request_id, request)
        if flags.stage in ("shadow", "canary") and flags.canary and side == "primary":
            self._comparison(request, flags.canary)
        if assignment.arm != "override":
            self._feedback(request, side)

    def _comparison(self, request: RequestEvent, candidate: str) -> None:
        latency, status = self._call("candidate", request.event_time)
        comparison = Comparison.parse(
            {
                "request_id": request.request_id, "event_time": request.event_time,
                "route": self.route, "status": "joined", "primary_model": request.model,
                "candidate_model": candidate, "primary_status": request.status,
                "candidate_status": status, "primary_latency_ms": request.latency_ms,
                "candidate_latency_ms": latency,
            }
        )  # fmt: skip
        self._send(self.topics.comparisons, request.request_id, comparison)

    def _feedback(self, request: RequestEvent, side: str) -> None:
        profile = self.profiles[side]
        common = {"request_id": request.request_id, "event_time": request.event_time,
                  "route": self.route, "arm": request.arm}  # fmt: skip
        if self.rng.random() < self.feedback_rate:
            csat = int(self.rng.choice(5, p=profile.csat)) + 1
            shift = self.cycle.csat * self.cycle.at(request.event_time.hour)
            if self.rng.random() < abs(shift):  # the daily cycle moves a rating one point
                csat = min(5, max(1, csat + (1 if shift > 0 else -1)))
            feedback = FeedbackEvent.parse(
                {**common, "feedback_id": uuid.uuid4().hex, "model": request.model, "csat": csat}
            )
            self._send(self.topics.feedback, request.request_id, feedback)
        if self.rng.random() < self.judge_rate:
            score = float(self.rng.choice(5, p=profile.faithfulness) + 1)  # a judge's 1-5
            judgement = Judgement.parse(
                {
                    **common, "judgement_id": uuid.uuid4().hex, "kind": "faithfulness",
                    "model": request.model, "judge_model": "judge", "score": round(score, 3),
                }
            )  # fmt: skip
            self._send(self.topics.judgements, request.request_id, judgement)


class ChunkDriver(Protocol):
    """Traffic of one route produced a chunk of event time at a time."""

    route: str

    def chunk(self, start: dt.datetime, seconds: float) -> None:
        """Produce ``seconds`` of traffic from event time ``start``."""


class Lockstep:
    """Replays traffic one tick at a time, each after the controller decided the one before.

    So the Router routes every chunk with the flags the controller set on the previous tick,
    as live traffic would be, however fast the replay runs.

    Args:
        driver: the traffic.
        controller: returns the running gates role (it may be replaced, e.g. restarted).
        router: the Router the driver routes with (to see the rollout end).
        start: event time of the first tick.
        tick_s: seconds of event time per step (the controller's tick).
    """

    def __init__(
        self,
        driver: ChunkDriver,
        controller: Callable[[], GatesRole],
        router: Router,
        *,
        start: dt.datetime,
        tick_s: float,
        timeout_s: float = 60.0,
    ) -> None:
        self.driver, self.controller, self.router = driver, controller, router
        self.start, self.tick_s, self.timeout_s = start, tick_s, timeout_s
        self.steps = 0

    @property
    def now(self) -> dt.datetime:
        """Event time replayed so far."""
        return self.start + dt.timedelta(seconds=self.steps * self.tick_s)

    def finished(self) -> bool:
        """Whether the rollout is promoted or rolled back."""
        flags = self.router.flags(self.driver.route)
        return flags is not None and flags.stage in ("promoted", "rolled_back")

    def step(self) -> None:
        """Replay one tick of traffic and wait until the controller decided its start.

        Raises:
            TimeoutError: the controller did not decide in ``timeout_s``.
            Exception: what a role started with :func:`~shadowlab.testing.running` raised.
        """
        begin = self.now
        self.steps += 1
        self.driver.chunk(begin, self.tick_s)

        def decided() -> bool:
            last = self.controller().last_tick(self.driver.route)
            return self.finished() or (last is not None and last >= begin)

        wait_until(
            decided,
            self.timeout_s,
            what=lambda: f"no decision on tick {begin}: {self.controller().counters}",
            poll_s=0.01,
        )

    def until(self, done: Callable[[], bool], *, steps: int) -> None:
        """Step until ``done()`` (checked after each step).

        Raises:
            TimeoutError: not done after ``steps`` steps.
        """
        for _ in range(steps):
            self.step()
            if done():
                return
        raise TimeoutError(f"not done after {steps} steps: {self.controller().counters}")
