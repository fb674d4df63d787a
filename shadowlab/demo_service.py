"""The demo's simulated service: users, sessions, a knowledge base, and feedback.

Each chunk of event time is routed by the real :class:`~producers.router.Router` (so canary
users follow the controller's weights), answered as the simulator answers (its own
:func:`~shadowlab.testing.model_server.decide`, in process: the same answer, latency and
fate the model
would give over HTTP, without spending the demo's one Python core on the service's HTTP
calls), and emitted by the real :class:`~producers.emitter.EventProducer`:
one :class:`~schemas.RequestEvent` per request and a :class:`~schemas.FeedbackEvent` for the
requests users rate. Everything downstream is the real roles' work: the shadow role replays
each request to the candidate over HTTP through the ``openai`` client, the judge calls the
simulated judge model the same way, and the join, sink and gates do what they do in
production.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from processors.evaluation.golden import GoldenItem
from processors.evaluation.runner import golden_messages
from producers.emitter import EventProducer
from producers.router import Router
from schemas import FeedbackEvent, RequestEvent
from shadowlab.core.errors import UnknownRouteError
from shadowlab.core.settings import Settings
from shadowlab.scenario import Scenario
from shadowlab.testing.model_server import decide

_ERROR_TYPES = {"error": "InternalServerError", "rate_limited": "RateLimitError",
                "hang": "APITimeoutError"}  # fmt: skip
_PRODUCTS = ("Aria", "Bolt", "Cedar", "Delta", "Ember", "Flux", "Glide", "Halo", "Iris", "Jet")
#: (sentence, question, keyword) templates: the question shares most words with its sentence.
_FACTS = (
    ("The warranty on the {p} lasts {n} months.", "How long does the warranty on the {p} last?",
     "{n} months"),
    ("The battery of the {p} runs for {n} hours.", "For how many hours does the battery of the "
     "{p} run?", "{n} hours"),
    ("The {p} weighs {n} grams.", "How many grams does the {p} weigh?", "{n} grams"),
    ("Returns of the {p} are accepted within {n} days.", "Within how many days are returns of "
     "the {p} accepted?", "{n} days"),
)  # fmt: skip


def knowledge_base(count: int, seed: int) -> list[GoldenItem]:
    """``count`` support questions, each with its product's documents and expected keyword."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        product = f"{_PRODUCTS[i % len(_PRODUCTS)]} {100 + i}"
        numbers = [int(rng.integers(2, 60)) for _ in _FACTS]
        docs = [f.format(p=product, n=n) for (f, _, _), n in zip(_FACTS, numbers, strict=True)]
        k = int(rng.integers(len(_FACTS)))
        _, question, keyword = _FACTS[k]
        items.append(
            GoldenItem(
                id=f"q{i:04d}",
                question=question.format(p=product),
                keywords=[keyword.format(n=numbers[k])],
                context=docs,
                expected=docs[k],
            )
        )
    return items


@dataclass(frozen=True)
class _Planned:
    """One request's random choices, drawn in order before any call is made."""

    request_id: str
    when: dt.datetime
    user: str
    session: str
    item: GoldenItem
    seed: int
    rated: bool
    rating_draw: float
    feedback_delay_s: float


class DemoTraffic:
    """Produces the route's simulated production traffic, one chunk of event time at a time.

    Args:
        scenario: rate, daily shape, users, sessions and CSAT of each model.
        settings: the model endpoints (the simulator) and prices.
        router: the live Router following ``routing.flags``.
        events: the EventProducer the service emits with.
        items: the knowledge base users ask about.
        drained: true once every role has processed everything produced so far.
    """

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        router: Router,
        events: EventProducer,
        items: Sequence[GoldenItem],
        drained: Callable[[], bool],
    ) -> None:
        self.scenario, self.settings, self.router, self.events = scenario, settings, router, events
        self.route = scenario.route
        self.items, self.drained = list(items), drained
        self.rng = np.random.default_rng(scenario.seed)
        self.counts: Counter[str] = Counter()
        self.csat = {m.name: m.csat for m in (scenario.primary, scenario.candidate)}
        self._sessions: dict[str, tuple[str, int]] = {}
        self._next_request = self._next_session = 0
        self.drain_timeout_s = 120.0
        self.profiles = {m.name: m.profile() for m in (scenario.primary, scenario.candidate)}

    def rate_at(self, when: dt.datetime) -> float:
        """Requests per second of event time at ``when`` (busiest at 14:00, quietest at 02:00)."""
        shape = self.scenario.traffic
        hour = when.hour + when.minute / 60
        swing = shape.diurnal_amplitude * math.cos(2 * math.pi * (hour - 14) / 24)
        return shape.requests_per_hour * (1 + swing) / 3600

    def chunk(self, start: dt.datetime, seconds: float) -> None:
        """Serve ``seconds`` of traffic from ``start``, then wait until the pipeline drained.

        Raises:
            TimeoutError: the roles did not process the chunk within ``drain_timeout_s``.
        """
        mid = start + dt.timedelta(seconds=seconds / 2)
        n = int(self.rng.poisson(self.rate_at(mid) * seconds))
        offsets = np.sort(self.rng.uniform(0, seconds, n))
        # every random choice is drawn here, in order, so a seed replays the same traffic
        planned = [self._plan(start + dt.timedelta(seconds=float(o))) for o in offsets]
        for request in planned:
            self._request(request)
        if not self.events.flush(30):
            raise TimeoutError("the EventProducer could not deliver the chunk to Kafka")
        deadline = time.monotonic() + self.drain_timeout_s
        while not self.drained():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the roles did not process the chunk at {start} in time")
            time.sleep(0.01)

    def _plan(self, when: dt.datetime) -> _Planned:
        shape = self.scenario.traffic
        user = f"user-{int(self.rng.zipf(1.3)) % shape.users:05d}"  # heavy users return
        session, left = self._sessions.get(user, ("", 0))
        if left <= 0:
            self._next_session += 1
            session = f"s-{self.scenario.seed}-{self._next_session:06d}"
            left = int(self.rng.geometric(1 / shape.session_requests))
        self._sessions[user] = (session, left - 1)
        self._next_request += 1
        rated = self.rng.random() < shape.feedback_rate
        return _Planned(
            request_id=f"req-{self.scenario.seed}-{self._next_request:07d}", when=when,
            user=user, session=session, item=self.items[int(self.rng.integers(len(self.items)))],
            seed=int(self.rng.integers(2**31)), rated=rated, rating_draw=float(self.rng.random()),
            feedback_delay_s=float(self.rng.uniform(5, 120)),
        )  # fmt: skip

    def _request(self, planned: _Planned) -> None:
        assignment = self.router.choose(self.route, key=planned.user)
        if self.router.flags(self.route) is None:
            raise UnknownRouteError(f"route {self.route!r} has no flags")
        item = planned.item
        # distinct requests, as users' are
        request = {"messages": golden_messages(item), "seed": planned.seed}
        # the service's own call: what the simulator answers over HTTP, decided in process
        profile = self.profiles[assignment.model].at(planned.when)
        outcome = decide(profile, self.scenario.seed, request)
        ok = outcome.kind == "ok"
        tokens = (outcome.prompt_tokens, outcome.completion_tokens if ok else 0)
        event = RequestEvent.parse(
            {
                "request_id": planned.request_id, "event_time": planned.when,
                "route": self.route, "user_key": planned.user, "session_id": planned.session,
                "request": request,
                "context_documents": [{"id": f"{item.id}-{i}", "text": d}
                                      for i, d in enumerate(item.context)],
                "model": assignment.model, "arm": assignment.arm,
                "flags_version": assignment.flags_version,
                "answer": outcome.answer if ok else None,
                "latency_ms": min(outcome.latency_s * 1000, 3_600_000.0),
                "ttft_ms": outcome.ttft_s * 1000 if ok else None,
                "prompt_tokens": tokens[0], "completion_tokens": tokens[1],
                "cost_usd": self.settings.model(assignment.model).cost(*tokens),
                "status": "ok" if ok else "timeout" if outcome.kind == "hang" else "error",
                "error_type": None if ok else _ERROR_TYPES[outcome.kind],
            }
        )  # fmt: skip
        self.events.emit_request(event)
        self.counts["requests"] += 1
        self.counts[f"requests.{assignment.arm}"] += 1
        if ok and planned.rated:
            self._feedback(event, planned)

    def _feedback(self, request: RequestEvent, planned: _Planned) -> None:
        cumulative = np.cumsum(self.csat[request.model])
        rating = int(np.searchsorted(cumulative, planned.rating_draw * cumulative[-1])) + 1
        feedback = FeedbackEvent.parse(
            {
                "feedback_id": f"fb-{request.request_id}", "request_id": request.request_id,
                "event_time": request.event_time + dt.timedelta(seconds=planned.feedback_delay_s),
                "route": self.route, "model": request.model, "arm": request.arm,
                "user_key": planned.user, "csat": min(rating, 5),
            }
        )  # fmt: skip
        self.events.emit_feedback(feedback)
        self.counts["feedback"] += 1
