"""Decision quality: simulated rollouts through the real controller and gate statistics.

Traffic is drawn tick by tick (numpy, fixed seed) as the sufficient statistics the
ClickHouse queries would return: paired shadow comparisons, canary and primary calls split
by the canary weight, CSAT feedback and judge scores. Each tick goes through the same
:func:`processors.gates.metrics.evaluate_gate` and :func:`processors.gates.controller.decide_tick`
as the live role, with each gate's statistics of the same kinds (:data:`STATISTICS` draws
them), so the rates measured here are the live system's.

Latencies are kept as 1 ms histograms per arm, so order statistics are exact to 1 ms.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np

from processors.gates.controller import decide_tick, stage_gates
from processors.gates.evaluate import (
    Evaluation,
    MeanStats,
    OfflineStats,
    OrderStats,
    RateStats,
    quantile_ratio_ranks,
)
from processors.gates.metrics import GateStatistics, MetricKey, evaluate_gate, metric_key
from processors.gates.stats import split_alpha
from schemas import RoutingFlags
from shadowlab.core.plan import GateSpec, RolloutSettings

_BINS = 60_000  # 1 ms bins up to 60 s
_CSAT = np.arange(1, 6)
EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class ModelProfile:
    """How a simulated model behaves: latency, errors, CSAT and faithfulness."""

    latency_median_ms: float = 800.0
    latency_sigma: float = 0.5
    error_rate: float = 0.01
    #: Probabilities of CSAT 1..5.
    csat: tuple[float, float, float, float, float] = (0.05, 0.10, 0.20, 0.35, 0.30)
    faithfulness_mean: float = 4.5


@dataclass(frozen=True)
class Traffic:
    """The simulated production traffic."""

    rps: float = 1.0
    feedback_rate: float = 0.2
    judge_rate: float = 0.1
    hours: float = 72.0
    #: P(judge prefers candidate), P(tie); the rest prefers the primary.
    preference: tuple[float, float] = (0.3, 0.4)


@dataclass
class _Arm:
    """Accumulators of one arm since the stage began."""

    hist: np.ndarray = field(default_factory=lambda: np.zeros(_BINS, dtype=np.int64))
    rate: RateStats = field(default_factory=RateStats)
    csat: MeanStats = field(default_factory=MeanStats)
    faith: MeanStats = field(default_factory=MeanStats)

    def order_stats(self, ranks: Callable[[int], list[int]]) -> OrderStats:
        cumulative = np.cumsum(self.hist)
        n = int(cumulative[-1])
        wanted = ranks(n)
        where = np.searchsorted(cumulative, np.asarray(wanted, dtype=np.int64))
        return OrderStats(n, {r: float(b) + 0.5 for r, b in zip(wanted, where, strict=True)})


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


def _add(stats: MeanStats, values: np.ndarray) -> MeanStats:
    return MeanStats(
        stats.n + len(values),
        stats.total + float(values.sum()),
        stats.total_sq + float((values * values).sum()),
    )


class _Simulation:
    def __init__(
        self,
        primary: ModelProfile,
        candidate: ModelProfile,
        traffic: Traffic,
        plan: RolloutSettings,
        gates: tuple[GateSpec, ...],
        seed: int,
        shadow_candidate: ModelProfile | None = None,
    ) -> None:
        self.primary, self.candidate, self.traffic = primary, candidate, traffic
        self.shadow_candidate = shadow_candidate or candidate
        self.plan, self.gates = plan, gates
        self.rng = np.random.default_rng(seed)
        active = [g for g in gates if g.stage != "offline"]
        self.alpha = split_alpha(plan.alpha, max(1, len(active)))
        #: Canary-arm requests since the current step began (what the live role counts).
        self.step_requests = 0
        self._reset()

    def _reset(self) -> None:
        self.arms = {"primary": _Arm(), "candidate": _Arm()}
        self.paired_errors = MeanStats()
        self.preference = MeanStats()

    def _latency(self, profile: ModelProfile, n: int) -> np.ndarray:
        draws = self.rng.lognormal(math.log(profile.latency_median_ms), profile.latency_sigma, n)
        return np.minimum(draws, _BINS - 1).astype(np.int64)

    def _calls(self, arm: str, profile: ModelProfile, n: int, *, feedback: bool) -> np.ndarray:
        acc = self.arms[arm]
        errors = self.rng.random(n) < profile.error_rate
        acc.rate = RateStats(acc.rate.n + n, acc.rate.k + int(errors.sum()))
        acc.hist += np.bincount(self._latency(profile, int((~errors).sum())), minlength=_BINS)
        if feedback:
            rated = self.rng.binomial(n, self.traffic.feedback_rate)
            acc.csat = _add(acc.csat, self.rng.choice(_CSAT, rated, p=profile.csat))
            judged = self.rng.binomial(n, self.traffic.judge_rate)
            scores = np.clip(self.rng.normal(profile.faithfulness_mean, 0.6, judged), 1, 5)
            acc.faith = _add(acc.faith, scores)
        return errors

    def traffic_tick(self, flags: RoutingFlags, seconds: float) -> None:
        n = int(self.rng.poisson(self.traffic.rps * seconds))
        if flags.stage == "shadow":
            primary_err = self._calls("primary", self.primary, n, feedback=False)
            candidate_err = self._calls("candidate", self.shadow_candidate, n, feedback=False)
            diff = candidate_err.astype(np.float64) - primary_err
            self.paired_errors = _add(self.paired_errors, diff)
            judged = self.rng.binomial(n, self.traffic.judge_rate)
            win, tie = self.traffic.preference
            prefs = self.rng.choice([1.0, 0.0, -1.0], judged, p=[win, tie, 1 - win - tie])
            self.preference = _add(self.preference, prefs)
        elif flags.stage == "canary":
            canary = int(self.rng.binomial(n, flags.canary_weight_bp / 10_000))
            self.step_requests += canary
            self._calls("candidate", self.candidate, canary, feedback=True)
            self._calls("primary", self.primary, n - canary, feedback=True)

    @property
    def candidate_arm(self) -> _Arm:
        return self.arms["candidate"]

    @property
    def primary_arm(self) -> _Arm:
        return self.arms["primary"]

    def latencies(self, gate: GateSpec) -> GateStatistics:
        """Both arms' latency order statistics, at the ranks ``gate`` reads."""

        def ranks(n: int) -> list[int]:
            return quantile_ratio_ranks(gate, n, alpha=self.alpha, t_star=self.plan.t_star)

        return self.candidate_arm.order_stats(ranks), self.primary_arm.order_stats(ranks)

    def evaluate(self, gate: GateSpec) -> Evaluation:
        candidate, baseline = STATISTICS[metric_key(gate)](self, gate)
        return evaluate_gate(gate, candidate, baseline, alpha=self.alpha, t_star=self.plan.t_star)

    def run(self) -> RolloutOutcome:
        flags = _initial_flags()
        tick = dt.timedelta(seconds=self.plan.tick_s)
        now = EPOCH
        end = EPOCH + dt.timedelta(hours=self.traffic.hours)
        canary: float | None = None
        while now < end:
            self.traffic_tick(flags, self.plan.tick_s)
            now += tick
            current = stage_gates(self.gates, flags.stage)
            evaluations = {g.key: self.evaluate(g) for g in current}
            result = decide_tick(flags, evaluations, self.gates, self.plan, now, now,
                                 step_requests=self.step_requests)  # fmt: skip
            if result.flags is None:
                continue
            self.step_requests = 0  # a new step (or stage) starts counting again
            hours = (now - EPOCH).total_seconds() / 3600
            if result.flags.stage != flags.stage:
                self._reset()
                canary = hours if result.flags.stage == "canary" else canary
            if result.flags.stage in ("promoted", "rolled_back"):
                return RolloutOutcome(result.flags.stage, hours, flags.stage, result.gates, canary)
            flags = result.flags
        return RolloutOutcome("held", self.traffic.hours, flags.stage, (), canary)


#: What the simulation draws for each supported (stage, metric): (candidate, baseline), the
#: kinds the live queries fetch. The offline gate always passes (it is not simulated).
STATISTICS: Final[Mapping[MetricKey, Callable[[_Simulation, GateSpec], GateStatistics]]] = {
    ("offline", "accuracy"): lambda sim, gate: (OfflineStats("pass", 1.0), None),
    ("shadow", "p95_latency"): _Simulation.latencies,
    ("shadow", "error_rate"): lambda sim, gate: (sim.paired_errors, sim.primary_arm.rate),
    ("shadow", "preference"): lambda sim, gate: (sim.preference, None),
    ("canary", "p95_latency"): _Simulation.latencies,
    ("canary", "error_rate"): lambda sim, gate: (sim.candidate_arm.rate, sim.primary_arm.rate),
    ("canary", "faithfulness"): lambda sim, gate: (sim.candidate_arm.faith, sim.primary_arm.faith),
    ("canary", "csat"): lambda sim, gate: (sim.candidate_arm.csat, sim.primary_arm.csat),
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
) -> Iterator[RolloutOutcome]:
    """Run ``rollouts`` independent simulated rollouts of ``candidate`` (one seed each).

    ``shadow_candidate`` is how the candidate behaves when replayed in shadow, when that
    differs from how it serves users (a regression only live traffic shows).
    """
    for i in range(rollouts):
        sim = _Simulation(
            primary or ModelProfile(), candidate, traffic or Traffic(), plan, gates, seed + i,
            shadow_candidate,
        )  # fmt: skip
        yield sim.run()


def slower(profile: ModelProfile, factor: float) -> ModelProfile:
    """``profile`` with every latency multiplied by ``factor`` (so is its p95)."""
    return replace(profile, latency_median_ms=profile.latency_median_ms * factor)
