"""Decision quality: simulated rollouts through the real controller and gate statistics.

Traffic is drawn tick by tick (numpy, fixed seed) as the sufficient statistics the
ClickHouse queries return: shadow pairs (one request, both models), canary pairs (one
canary-arm and one primary-arm request of the same tick, as
:func:`~processors.gates.queries.canary_pairs` matches them), CSAT ratings and discrete 1–5
judge scores. Each tick goes through the same :func:`~processors.gates.metrics.evaluate_gate`
and :func:`~processors.gates.controller.decide_tick` as the live role, so the rates measured
here are the live system's.

The world is not tidy: a :class:`DailyCycle` moves latency, failure rates and CSAT over the
day (both models alike, as a real service's load does), calls time out (a failure, and the
slowest latency), and traffic may be low. Latencies are kept as 1 ms histograms per arm (the
last bin is "failed"), so order statistics are exact to 1 ms.

Two rules: ``shadowlab`` (the anytime-valid bounds) and ``point-k5``, the same controller on
point values, failing a gate only after 5 consecutive failing ticks (Flagger's
``failureLimit``, Argo Rollouts' ``consecutiveErrorLimit``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final, Literal

import numpy as np

from processors.gates.controller import decide_tick, stage_gates
from processors.gates.evaluate import (
    Evaluation,
    OfflineStats,
    OrderStats,
    Pairs,
    Scores,
    quantile_ratio_ranks,
)
from processors.gates.metrics import (
    GateStatistics,
    MetricKey,
    evaluate_gate,
    gate_alphas,
    metric_key,
    planned_samples,
)
from schemas import Outcome, RoutingFlags
from shadowlab.core.plan import GateSpec, RolloutSettings

_BINS = 30_001  # 1 ms bins up to 30 s; the last one holds the failed calls (inf)
_FAILED = _BINS - 1
_SCORES = np.arange(1, 6)
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
Rule = Literal["shadowlab", "point-k5"]
#: point-k5 fails a gate after this many consecutive failing ticks.
CONSECUTIVE_FAILURES: Final = 5

Probabilities = tuple[float, float, float, float, float]


@dataclass(frozen=True)
class ModelProfile:
    """How a simulated model behaves: latency, failures, CSAT and judge scores."""

    latency_median_ms: float = 800.0
    latency_sigma: float = 0.5
    #: Calls answered with an error.
    error_rate: float = 0.01
    #: Calls that time out (also failures: the slowest latency, and counted as errors).
    timeout_rate: float = 0.0
    #: Probabilities of CSAT 1..5 (mean 3.75).
    csat: Probabilities = (0.05, 0.10, 0.20, 0.35, 0.30)
    #: Probabilities of a judge's faithfulness score 1..5 (mean 4.53).
    faithfulness: Probabilities = (0.01, 0.02, 0.05, 0.27, 0.65)


@dataclass(frozen=True)
class DailyCycle:
    """A daily swing of the service, the same for both models (relative amplitudes).

    At hour ``h`` of event time the factor is ``s = cos(2π (h - peak_hour) / 24)`` (1 at
    the peak, -1 twelve hours later): latency × ``1 + latency s``, error and timeout rates ×
    ``1 + failures s``, and CSAT moves by ``csat × s`` points on average.
    """

    latency: float = 0.0
    failures: float = 0.0
    csat: float = 0.0
    peak_hour: float = 0.0

    def at(self, hours: float) -> float:
        """The cycle's ``s`` at ``hours`` of event time since the rollout began."""
        return math.cos(2 * math.pi * (hours - self.peak_hour) / 24)


@dataclass(frozen=True)
class Traffic:
    """The simulated production traffic."""

    rps: float = 1.0
    feedback_rate: float = 0.2
    judge_rate: float = 0.1
    hours: float = 72.0
    #: P(judge prefers candidate), P(tie); the rest prefers the primary.
    preference: tuple[float, float] = (0.3, 0.4)
    cycle: DailyCycle = field(default_factory=DailyCycle)


@dataclass(frozen=True)
class RolloutOutcome:
    """How one simulated rollout ended."""

    outcome: str
    #: Event hours from the start of the rollout to its end.
    hours: float
    #: The stage it was in when it ended (``canary`` for a canary rolled back).
    stage: str
    gates: tuple[str, ...]
    #: Event hours at which the canary began (``None``: it never did).
    canary_hours: float | None = None


def _add_pairs(counts: dict[tuple[float, float], int], c: np.ndarray, p: np.ndarray) -> None:
    """Count the pairs ``(c[i], p[i])`` of small non-negative integers (errors, ratings)."""
    if not len(c):
        return
    codes = np.bincount(c.astype(np.int64) * 8 + p.astype(np.int64))
    for code in np.flatnonzero(codes).tolist():
        key = (float(code // 8), float(code % 8))
        counts[key] = counts.get(key, 0) + int(codes[code])


def _add_scores(counts: dict[float, int], scores: np.ndarray) -> None:
    values, n = np.unique(scores, return_counts=True)
    for v, k in zip(values.tolist(), n.tolist(), strict=True):
        counts[float(v)] = counts.get(float(v), 0) + k


@dataclass
class _Accumulators:
    """Everything the stage's gates read, since the stage began."""

    latency: dict[str, np.ndarray] = field(
        default_factory=lambda: {a: np.zeros(_BINS, dtype=np.int64) for a in ("c", "p")}
    )
    errors: dict[tuple[float, float], int] = field(default_factory=dict)
    csat: dict[tuple[float, float], int] = field(default_factory=dict)
    faithfulness: dict[str, dict[float, int]] = field(default_factory=lambda: {"c": {}, "p": {}})
    preference: dict[float, int] = field(default_factory=dict)

    def order_stats(self, arm: str, ranks: list[int]) -> OrderStats:
        cumulative = np.cumsum(self.latency[arm])
        n = int(cumulative[-1])
        where = np.searchsorted(cumulative, np.asarray(ranks, dtype=np.int64))
        values = {r: math.inf if b == _FAILED else float(b) + 0.5
                  for r, b in zip(ranks, where.tolist(), strict=True)}  # fmt: skip
        return OrderStats(n, values)


class _Simulation:
    def __init__(
        self,
        primary: ModelProfile,
        candidate: ModelProfile,
        traffic: Traffic,
        plan: RolloutSettings,
        gates: tuple[GateSpec, ...],
        seed: int,
        *,
        shadow_candidate: ModelProfile | None = None,
        rule: Rule = "shadowlab",
    ) -> None:
        self.primary, self.candidate, self.traffic = primary, candidate, traffic
        self.shadow_candidate = shadow_candidate or candidate
        self.plan, self.gates, self.rule = plan, gates, rule
        self.rng = np.random.default_rng(seed)
        self.alphas = gate_alphas(plan.alpha, gates)
        self.t_star = {
            g.key: planned_samples(g, plan, requests_per_h=traffic.rps * 3600) for g in gates
        }
        #: Canary-arm requests since the current step began (what the live role counts).
        self.step_requests = 0
        self.streaks: dict[str, int] = {}
        self.acc = _Accumulators()
        self.hours = 0.0

    # -- drawing the traffic of one tick ---------------------------------------------------

    def _failures(self, profile: ModelProfile, n: int, s: float) -> np.ndarray:
        scale = max(0.0, 1 + self.traffic.cycle.failures * s)
        rate = min(1.0, (profile.error_rate + profile.timeout_rate) * scale)
        return self.rng.random(n) < rate

    def _latency(self, arm: str, profile: ModelProfile, failed: np.ndarray, s: float) -> None:
        median = profile.latency_median_ms * max(0.05, 1 + self.traffic.cycle.latency * s)
        draws = self.rng.lognormal(math.log(median), profile.latency_sigma, len(failed))
        bins = np.where(failed, _FAILED, np.minimum(draws, _FAILED - 1).astype(np.int64))
        self.acc.latency[arm] += np.bincount(bins, minlength=_BINS)

    def _calls(self, n: int, candidate: ModelProfile, s: float) -> None:
        """``n`` pairs of calls: the candidate's and the primary's, latency and failures."""
        failed = {"c": self._failures(candidate, n, s), "p": self._failures(self.primary, n, s)}
        self._latency("c", candidate, failed["c"], s)
        self._latency("p", self.primary, failed["p"], s)
        _add_pairs(self.acc.errors, failed["c"].astype(np.float64), failed["p"].astype(np.float64))

    def _ratings(self, profile: ModelProfile, n: int, s: float) -> np.ndarray:
        ratings = self.rng.choice(_SCORES, n, p=profile.csat)
        shift = self.traffic.cycle.csat * s  # move a share |shift| of ratings one point
        moved = self.rng.random(n) < abs(shift)
        shifted: np.ndarray = np.clip(ratings + np.where(moved, np.sign(shift), 0), 1, 5)
        return shifted.astype(np.float64)

    def _judged(self, arm: str, profile: ModelProfile, n: int) -> None:
        judged = self.rng.binomial(n, self.traffic.judge_rate)
        scores = self.rng.choice(_SCORES, judged, p=profile.faithfulness).astype(np.float64)
        _add_scores(self.acc.faithfulness[arm], scores)

    def traffic_tick(self, flags: RoutingFlags, seconds: float) -> None:
        s = self.traffic.cycle.at(self.hours)
        n = int(self.rng.poisson(self.traffic.rps * seconds))
        if flags.stage == "shadow":
            self._calls(n, self.shadow_candidate, s)
            judged = self.rng.binomial(n, self.traffic.judge_rate)
            win, tie = self.traffic.preference
            prefs = self.rng.choice([1.0, 0.0, -1.0], judged, p=[win, tie, 1 - win - tie])
            _add_scores(self.acc.preference, prefs)
        elif flags.stage == "canary":
            canary = int(self.rng.binomial(n, flags.canary_weight_bp / 10_000))
            self.step_requests += canary
            self._calls(min(canary, n - canary), self.candidate, s)  # matched within the tick
            rated_c, rated_p = (int(self.rng.binomial(k, self.traffic.feedback_rate))
                                for k in (canary, n - canary))  # fmt: skip
            matched = min(rated_c, rated_p)
            _add_pairs(self.acc.csat, self._ratings(self.candidate, matched, s),
                       self._ratings(self.primary, matched, s))  # fmt: skip
            self._judged("c", self.candidate, canary)
            self._judged("p", self.primary, n - canary)

    # -- evaluating ------------------------------------------------------------------------

    def latencies(self, gate: GateSpec) -> GateStatistics:
        """Both arms' latency order statistics (failures as ``inf``) at the gate's ranks."""
        n = int(self.acc.latency["c"].sum())
        ranks = quantile_ratio_ranks(gate, n, alphas=self.alphas, t_star=self.t_star[gate.key])
        return self.acc.order_stats("c", ranks), self.acc.order_stats("p", ranks)

    def evaluate(self, gate: GateSpec) -> Evaluation:
        candidate, baseline = STATISTICS[metric_key(gate)](self, gate)
        evaluation = evaluate_gate(gate, candidate, baseline, alphas=self.alphas,
                                   t_star=self.t_star[gate.key], interval=False)  # fmt: skip
        if self.rule == "point-k5" and gate.stage != "offline":
            evaluation = replace(evaluation, outcome=self._point_outcome(gate, evaluation))
        return evaluation

    def _point_outcome(self, gate: GateSpec, evaluation: Evaluation) -> Outcome:
        """The point value against the threshold; a fail only after K failing ticks."""
        if evaluation.n < gate.min_n:
            self.streaks[gate.key] = 0
            return "inconclusive"
        value = evaluation.value
        if value is None:  # an infinite p95 ratio: the candidate fails > 5 % of calls
            value = math.inf
        at_most = gate.direction == "at_most"
        failing = value > evaluation.threshold if at_most else value < evaluation.threshold
        self.streaks[gate.key] = self.streaks.get(gate.key, 0) + 1 if failing else 0
        if not failing:
            return "pass"
        return "fail" if self.streaks[gate.key] >= CONSECUTIVE_FAILURES else "inconclusive"

    def run(self) -> RolloutOutcome:
        flags = _initial_flags()
        tick = dt.timedelta(seconds=self.plan.tick_s)
        now = EPOCH
        end = EPOCH + dt.timedelta(hours=self.traffic.hours)
        canary: float | None = None
        while now < end:
            self.traffic_tick(flags, self.plan.tick_s)
            now += tick
            self.hours = (now - EPOCH).total_seconds() / 3600
            current = stage_gates(self.gates, flags.stage)
            evaluations = {g.key: self.evaluate(g) for g in current}
            result = decide_tick(flags, evaluations, self.gates, self.plan, now, now,
                                 step_requests=self.step_requests)  # fmt: skip
            if result.flags is None:
                continue
            self.step_requests = 0  # a new step (or stage) starts counting again
            if result.flags.stage != flags.stage:
                self.acc, self.streaks = _Accumulators(), {}
                canary = self.hours if result.flags.stage == "canary" else canary
            if result.flags.stage in ("promoted", "rolled_back"):
                return RolloutOutcome(result.flags.stage, self.hours, flags.stage, result.gates,
                                      canary)  # fmt: skip
            flags = result.flags
        return RolloutOutcome("held", self.traffic.hours, flags.stage, (), canary)


#: What the simulation draws for each supported (stage, metric): (candidate, baseline), the
#: kinds the live queries fetch. The offline gate always passes (it is not simulated).
STATISTICS: Final[Mapping[MetricKey, Callable[[_Simulation, GateSpec], GateStatistics]]] = {
    ("offline", "accuracy"): lambda sim, gate: (OfflineStats("pass", 1.0), None),
    ("shadow", "p95_latency"): _Simulation.latencies,
    ("shadow", "error_rate"): lambda sim, gate: (Pairs(dict(sim.acc.errors)), None),
    ("shadow", "preference"): lambda sim, gate: (Scores(dict(sim.acc.preference)), None),
    ("canary", "p95_latency"): _Simulation.latencies,
    ("canary", "error_rate"): lambda sim, gate: (Pairs(dict(sim.acc.errors)), None),
    ("canary", "faithfulness"): lambda sim, gate: (
        Scores(dict(sim.acc.faithfulness["c"])),
        Scores(dict(sim.acc.faithfulness["p"])),
    ),
    ("canary", "csat"): lambda sim, gate: (Pairs(dict(sim.acc.csat)), None),
    # the simulated traffic has no structured outputs nor tools: these gates see no sample
    ("shadow", "invalid_output"): lambda sim, gate: (Pairs({}), None),
    ("shadow", "tool_agreement"): lambda sim, gate: (Scores({}), None),
}


def _initial_flags() -> RoutingFlags:
    return RoutingFlags(
        route="sim",
        version=1,
        stage="offline",
        primary="primary",
        canary="candidate",
        salt="sim",
        changed_at=EPOCH,
        changed_by="sim",
        stage_since=EPOCH,
        step_since=EPOCH,
    )


def simulate_rollouts(
    candidate: ModelProfile,
    *,
    rollouts: int,
    plan: RolloutSettings,
    gates: tuple[GateSpec, ...],
    primary: ModelProfile | None = None,
    traffic: Traffic | None = None,
    seed: int = 0,
    shadow_candidate: ModelProfile | None = None,
    rule: Rule = "shadowlab",
) -> Iterator[RolloutOutcome]:
    """Run ``rollouts`` independent simulated rollouts of ``candidate`` (one seed each).

    ``shadow_candidate`` is how the candidate behaves when replayed in shadow, when that
    differs from how it serves users (a regression only live traffic shows).
    """
    for i in range(rollouts):
        sim = _Simulation(
            primary or ModelProfile(), candidate, traffic or Traffic(), plan, gates, seed + i,
            shadow_candidate=shadow_candidate, rule=rule,
        )  # fmt: skip
        yield sim.run()


def slower(profile: ModelProfile, factor: float) -> ModelProfile:
    """``profile`` with every latency multiplied by ``factor`` (so is its p95)."""
    return replace(profile, latency_median_ms=profile.latency_median_ms * factor)
