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
    Evaluation,
    MeanStats,
    OfflineStats,
    OrderStats,
    RateStats,
    evaluate_mean,
    evaluate_mean_difference,
    evaluate_paired_difference,
    evaluate_quantile_ratio,
    evaluate_rate_difference,
    from_offline,
)
from shadowlab.core.plan import GateSpec, GateStage, Metric

#: A gate's stage and metric: the key of :data:`GATE_METRICS`.
MetricKey = tuple[GateStage, Metric]
#: One side's sufficient statistic (``None``: the gate has no baseline statistic).
Statistic = OrderStats | RateStats | MeanStats | OfflineStats | None
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
        alpha: float, t_star: float,
    ) -> Evaluation:  # fmt: skip
        """The gate's evaluation at level ``alpha``, tuned for ``t_star`` samples."""


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
    published: OfflineStats, _: None, gate: GateSpec, /, *, alpha: float, t_star: float
) -> Evaluation:
    return from_offline(published.outcome, gate, published.value)


def _paired(
    differences: MeanStats, primary: RateStats, gate: GateSpec, /, *, alpha: float, t_star: float
) -> Evaluation:
    return evaluate_paired_difference(differences, primary.rate, gate, alpha=alpha, t_star=t_star)


def _mean(value_range: tuple[float, float]) -> Evaluator[MeanStats, MeanStats | None]:
    """A one-arm mean; a baseline sample, if any, is reported but not tested."""

    def evaluate(
        candidate: MeanStats, baseline: MeanStats | None, gate: GateSpec, /, *,
        alpha: float, t_star: float,
    ) -> Evaluation:  # fmt: skip
        return evaluate_mean(
            candidate, gate, alpha=alpha, t_star=t_star, value_range=value_range,
            baseline=baseline.mean if baseline is not None else None,
        )  # fmt: skip

    return evaluate


def _mean_difference(value_range: tuple[float, float]) -> Evaluator[MeanStats, MeanStats]:
    def evaluate(
        candidate: MeanStats, baseline: MeanStats, gate: GateSpec, /, *,
        alpha: float, t_star: float,
    ) -> Evaluation:  # fmt: skip
        return evaluate_mean_difference(
            candidate, baseline, gate, alpha=alpha, t_star=t_star, value_range=value_range
        )

    return evaluate


#: Every supported gate: (stage, metric) → (candidate kind, baseline kind, evaluator).
GATE_METRICS: Final[Mapping[MetricKey, GateMetric[Any, Any]]] = {
    ("offline", "accuracy"): _row(OfflineStats, NoneType, _offline),
    ("shadow", "p95_latency"): _row(OrderStats, OrderStats, evaluate_quantile_ratio),
    # per-pair error differences; the primary's error rate over the same pairs
    ("shadow", "error_rate"): _row(MeanStats, RateStats, _paired),
    ("shadow", "preference"): _row(MeanStats, NoneType, _mean(SIGNED_UNIT_RANGE)),
    ("canary", "p95_latency"): _row(OrderStats, OrderStats, evaluate_quantile_ratio),
    ("canary", "error_rate"): _row(RateStats, RateStats, evaluate_rate_difference),
    # the candidate's mean against the threshold; the primary's mean is only reported
    ("canary", "faithfulness"): _row(MeanStats, MeanStats, _mean(SCORE_RANGE)),
    ("canary", "csat"): _row(MeanStats, MeanStats, _mean_difference(SCORE_RANGE)),
}


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
    gate: GateSpec, candidate: Statistic, baseline: Statistic, *, alpha: float, t_star: float
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
    return row.evaluate(candidate, baseline, gate, alpha=alpha, t_star=t_star)
