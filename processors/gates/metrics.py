"""One table from a gate's (stage, metric) to how it is evaluated: :data:`GATE_METRICS`.

Each row names the kinds of the gate's two sufficient statistics (candidate, baseline) and
the evaluator of :mod:`processors.gates.evaluate` that turns them into an outcome, with its
value range. The live queries (:mod:`processors.gates.queries`) and the simulations
(:mod:`processors.gates.montecarlo`) only produce those statistics and call
:func:`evaluate_gate`, so both evaluate every gate the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import NoneType
from typing import Any, Final, Generic, Protocol, TypeVar

from processors.gates.evaluate import (
    SCORE_RANGE,
    SIGNED_UNIT_RANGE,
    UNIT_RANGE,
    Alphas,
    Evaluation,
    OfflineStats,
    OrderStats,
    Pairs,
    Scores,
    evaluate_error_pairs,
    evaluate_mean,
    evaluate_paired_difference,
    evaluate_quantile_ratio,
    from_offline,
)
from processors.gates.stats import split_alpha
from shadowlab.core.plan import GateSpec, GateStage, Metric, RolloutSettings

#: A gate's stage and metric: the key of :data:`GATE_METRICS`.
MetricKey = tuple[GateStage, Metric]
#: One side's sufficient statistic (``None``: the gate has no baseline statistic).
Statistic = OrderStats | Pairs | Scores | OfflineStats | None
#: A gate's statistics: (candidate, baseline).
GateStatistics = tuple[Statistic, Statistic]

C = TypeVar("C", bound=Statistic)
B = TypeVar("B", bound=Statistic)
C_contra = TypeVar("C_contra", bound=Statistic, contravariant=True)
B_contra = TypeVar("B_contra", bound=Statistic, contravariant=True)


class Evaluator(Protocol[C_contra, B_contra]):
    """Evaluates a gate from its candidate and baseline statistics."""

    def __call__(
        self, candidate: C_contra, baseline: B_contra, gate: GateSpec, /, *,
        alphas: Alphas, t_star: float, interval: bool,
    ) -> Evaluation:  # fmt: skip
        """The gate's evaluation at ``alphas`` (bounds only when ``interval``)."""


@dataclass(frozen=True)
class GateMetric(Generic[C, B]):
    """How one (stage, metric) is evaluated: its statistics' kinds and its evaluator."""

    candidate: type[C]
    baseline: type[B]
    evaluate: Evaluator[C, B]


def _row(candidate: type[C], baseline: type[B], evaluate: Evaluator[C, B]) -> GateMetric[Any, Any]:
    # A function, not the class: mypy checks each row's kinds against its evaluator.
    return GateMetric(candidate, baseline, evaluate)


def _offline(
    published: OfflineStats, _: None, gate: GateSpec, /, *, alphas: Alphas, t_star: float,
    interval: bool,
) -> Evaluation:  # fmt: skip
    return from_offline(published.outcome, gate, published.value)


def _errors(
    pairs: Pairs, _: None, gate: GateSpec, /, *, alphas: Alphas, t_star: float, interval: bool
) -> Evaluation:
    return evaluate_error_pairs(pairs, gate, alphas=alphas, interval=interval)


def _latency(
    candidate: OrderStats, baseline: OrderStats, gate: GateSpec, /, *, alphas: Alphas,
    t_star: float, interval: bool,
) -> Evaluation:  # fmt: skip
    return evaluate_quantile_ratio(candidate, baseline, gate, alphas=alphas, t_star=t_star)


def _mean(value_range: tuple[float, float]) -> Evaluator[Scores, Scores | None]:
    """A one-arm mean; a baseline sample, if any, is reported but not tested."""

    def evaluate(
        candidate: Scores, baseline: Scores | None, gate: GateSpec, /, *,
        alphas: Alphas, t_star: float, interval: bool,
    ) -> Evaluation:  # fmt: skip
        return evaluate_mean(
            candidate, gate, alphas=alphas, value_range=value_range, interval=interval,
            baseline=baseline.mean if baseline is not None else None,
        )  # fmt: skip

    return evaluate


def _paired_difference(value_range: tuple[float, float]) -> Evaluator[Pairs, None]:
    def evaluate(
        candidate: Pairs, _: None, gate: GateSpec, /, *,
        alphas: Alphas, t_star: float, interval: bool,
    ) -> Evaluation:  # fmt: skip
        return evaluate_paired_difference(
            candidate, gate, alphas=alphas, value_range=value_range, interval=interval
        )

    return evaluate


#: Every supported gate: (stage, metric) → (candidate kind, baseline kind, evaluator). Shadow
#: pairs are one request answered by both models; canary pairs one canary-arm request and
#: one primary-arm request of the same tick (see :mod:`processors.gates.queries`).
GATE_METRICS: Final[Mapping[MetricKey, GateMetric[Any, Any]]] = {
    ("offline", "accuracy"): _row(OfflineStats, NoneType, _offline),
    ("shadow", "p95_latency"): _row(OrderStats, OrderStats, _latency),
    # pairs of (candidate failed, primary failed), 0/1
    ("shadow", "error_rate"): _row(Pairs, NoneType, _errors),
    ("shadow", "preference"): _row(Scores, NoneType, _mean(SIGNED_UNIT_RANGE)),
    ("canary", "p95_latency"): _row(OrderStats, OrderStats, _latency),
    ("canary", "error_rate"): _row(Pairs, NoneType, _errors),
    # the candidate's scores against the threshold; the primary's mean is only reported
    ("canary", "faithfulness"): _row(Scores, Scores, _mean(SCORE_RANGE)),
    # pairs of (canary rating, primary rating)
    ("canary", "csat"): _row(Pairs, NoneType, _paired_difference(SCORE_RANGE)),
    # pairs of (candidate's answer invalid, primary's invalid), 0/1, as error_rate
    ("shadow", "invalid_output"): _row(Pairs, NoneType, _errors),
    # 1 when the candidate's tool calls matched the primary's, else 0
    ("shadow", "tool_agreement"): _row(Scores, NoneType, _mean(UNIT_RANGE)),
}


def gate_alphas(alpha: float, gates: tuple[GateSpec, ...]) -> Alphas:
    """Each gate's error budgets, split over the gates that can make each error.

    A false rollback's ``alpha`` is split over the enabled gates that can fail (every
    shadow and canary gate), a false promotion's over the required ones.

    The offline gate's error is ``shadowlab eval``'s (a golden set is not a sample of
    traffic); gates that are not enabled spend nothing.
    """
    live = [g for g in gates if g.stage != "offline" and g.enabled]
    required = [g for g in live if g.required]
    return Alphas(split_alpha(alpha, max(1, len(live))), split_alpha(alpha, max(1, len(required))))


def planned_samples(
    gate: GateSpec, plan: RolloutSettings, *, requests_per_h: float | None
) -> float:
    """The ``t_star`` of a latency gate: the calls its window holds at the measured traffic.

    All the route's requests in shadow; in canary, the matched pairs of the plan's last step
    (the smaller arm's share of the requests); at least ``min_n``; the plan's ``t_star``
    when the traffic is not known yet.
    """
    if not requests_per_h:
        return plan.t_star
    final = plan.canary_steps[-1].weight_pct / 100
    share = min(final, 1 - final) if gate.stage == "canary" else 1.0
    return max(float(gate.min_n), requests_per_h * gate.window_h * share)


def metric_key(gate: GateSpec) -> MetricKey:
    """``gate``'s (stage, metric), checked against :data:`GATE_METRICS`.

    Raises:
        ValueError: no evaluator supports the pair (the message names the supported ones).
    """
    key: MetricKey = (gate.stage, gate.metric)
    if key not in GATE_METRICS:
        supported = ", ".join(f"{s}.{m}" for s, m in sorted(GATE_METRICS))
        raise ValueError(
            f"gate {gate.key}: metric {gate.metric!r} cannot be gated in the {gate.stage} "
            f"stage; supported (stage.metric): {supported}"
        )
    return key


def evaluate_gate(
    gate: GateSpec,
    candidate: Statistic,
    baseline: Statistic,
    *,
    alphas: Alphas,
    t_star: float,
    interval: bool = True,
) -> Evaluation:
    """Evaluate ``gate`` from its statistics, by its row of :data:`GATE_METRICS`.

    Raises:
        ValueError: the gate's (stage, metric) is not supported.
        TypeError: a statistic is not of the kind the row names.
    """
    row = GATE_METRICS[metric_key(gate)]
    for side, value, kind in (("candidate", candidate, row.candidate),
                              ("baseline", baseline, row.baseline)):  # fmt: skip
        if not isinstance(value, kind):
            raise TypeError(
                f"gate {gate.key}: its {side} statistic must be {kind.__name__}, "
                f"not {type(value).__name__}"
            )
    return row.evaluate(candidate, baseline, gate, alphas=alphas, t_star=t_star, interval=interval)
