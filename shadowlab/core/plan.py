"""What is gated, when, and how: the rollout plan in the settings, with the user's defaults.

The user's promotion criteria, as gates:

=================  =========  ==============================================  ========  ======
gate               stage      rule (``threshold``, ``floor``)                 window    min n
=================  =========  ==============================================  ========  ======
accuracy           offline    candidate ≥ 0.95 × baseline (golden set)        —         —
p95_latency        shadow     p95 candidate ≤ 1.10 × p95 primary (all calls)  1 h       400
error_rate         shadow     error rate ≤ 1.10 × primary's + 0.002           1 h       400
preference         shadow     judge preference ≥ −0.2 (not required)          1 h       100
faithfulness       canary     mean judge score ≥ 4.0 of 5                     24 h      200
p95_latency        canary     p95 canary ≤ 1.10 × p95 primary (all calls)     24 h      400
error_rate         canary     error rate ≤ 1.10 × primary's + 0.002           24 h      400
csat               canary     CSAT ≥ primary's − 0.10                         48 h      300
invalid_output     shadow     invalid rate ≤ 1.10 × primary's + 0.002 (off)   1 h       100
tool_agreement     shadow     tool calls as the primary's ≥ 0.9 (off)         1 h       100
=================  =========  ==============================================  ========  ======

The last two are off by default (a route turns them on: ``gates: {invalid_output: {enabled:
true}}``) and not required when on, so a route without structured outputs or tools is never
held by them, while a candidate that breaks them still fails and rolls back.
``invalid_output`` pairs the two models' structured answers to one request (an answer is
invalid when it does not match the request's ``json_schema``, or is not JSON for a JSON
format); ``tool_agreement`` is the share of requests where either model called a tool that
the candidate called the same tools with the same arguments.

"≤ baseline" and "≥ baseline" rules get a non-inferiority margin: with none, an identical
candidate could never *pass*, because a bound around a zero difference always reaches past
zero. The error-rate margin is relative, as the user wrote it ("≤ baseline"): 10 % of the
baseline's rate plus an absolute floor of 0.2 percentage points, so 1 % → 1.5 % is not
"within margin" as it would be with a fixed +1 point. The margins above are what an identical
candidate passes at 1 request per second within the windows (see README, Decision quality).
A failed call counts as the slowest possible latency in ``p95_latency``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

GateStage = Literal["offline", "shadow", "canary"]
Metric = Literal[
    "accuracy",
    "p95_latency",
    "error_rate",
    "faithfulness",
    "csat",
    "preference",
    "invalid_output",
    "tool_agreement",
]
Direction = Literal["at_most", "at_least"]

#: How each metric is compared with its threshold.
DIRECTION: dict[Metric, Direction] = {
    "accuracy": "at_least",
    "p95_latency": "at_most",
    "error_rate": "at_most",
    "faithfulness": "at_least",
    "csat": "at_least",
    "preference": "at_least",
    "invalid_output": "at_most",
    "tool_agreement": "at_least",
}

#: What the value and the interval of each metric are, for people reading a decision.
MEANING: dict[Metric, str] = {
    "accuracy": "candidate accuracy / baseline accuracy (golden set)",
    "p95_latency": "p95 latency ratio, candidate / baseline (failed calls as slowest)",
    "error_rate": "error-rate excess, candidate − (1 + threshold) × baseline (≤ floor)",
    "faithfulness": "mean faithfulness score of the candidate (1–5)",
    "csat": "mean CSAT difference, candidate − baseline",
    "preference": "judge preference, +1 candidate, 0 tie, −1 primary (mean)",
    "invalid_output": "invalid-output excess, candidate − (1 + threshold) × baseline (≤ floor)",
    "tool_agreement": "share of tool-calling requests whose calls match the primary's",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GateSpec(_Frozen):
    """One gate: a metric of one stage, its threshold, window and minimum sample."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    stage: GateStage
    metric: Metric
    threshold: float
    #: Event-time span the gate must cover before it can promote (canary), and the span a
    #: shadow gate looks at.
    window_h: Annotated[float, Field(gt=0, le=24 * 30)] = 24.0
    #: Below this many samples (per arm) the outcome is ``inconclusive``.
    min_n: Annotated[int, Field(ge=1)] = 200
    #: A required gate must ``pass`` to advance; any gate's ``fail`` rolls back.
    required: bool = True
    enabled: bool = True
    #: The latency quantile of ``p95_latency`` gates.
    quantile: Annotated[float, Field(gt=0, lt=1)] = 0.95
    #: ``error_rate`` and ``invalid_output`` gates: the absolute allowance added to
    #: ``baseline × (1 + threshold)``.
    floor: Annotated[float, Field(ge=0, le=1)] = 0.0

    @property
    def margin(self) -> str:
        """The gate's rule in words, as ``gates status``, the report and the audit show it."""
        t = f"{self.threshold:g}"
        rules: dict[Metric, str] = {
            "accuracy": f"accuracy ≥ {t} × baseline (golden set)",
            "p95_latency": f"p{self.quantile * 100:g} ≤ {t} × baseline (failures as slowest)",
            "error_rate": f"error rate ≤ {1 + self.threshold:g} × baseline + {self.floor:g}",
            "faithfulness": f"mean score ≥ {t}",
            "csat": f"CSAT ≥ baseline {'−' if self.threshold < 0 else '+'} {abs(self.threshold):g}",
            "preference": f"mean preference ≥ {t}",
            "invalid_output": (
                f"invalid output rate ≤ {1 + self.threshold:g} × baseline + {self.floor:g}"
            ),
            "tool_agreement": f"tool calls match the primary's ≥ {t}",
        }
        return rules[self.metric]

    @property
    def direction(self) -> Direction:
        """``at_most`` or ``at_least``: which side of the threshold passes."""
        return DIRECTION[self.metric]

    @property
    def key(self) -> str:
        """``stage.name``: unique within a plan."""
        return f"{self.stage}.{self.name}"


class GateOverride(_Frozen):
    """A route's change to one default gate (every field optional)."""

    threshold: float | None = None
    window_h: Annotated[float, Field(gt=0, le=24 * 30)] | None = None
    min_n: Annotated[int, Field(ge=1)] | None = None
    required: bool | None = None
    enabled: bool | None = None
    floor: Annotated[float, Field(ge=0, le=1)] | None = None


class CanaryStep(_Frozen):
    """One canary weight and the least event time it is held before the next step."""

    weight_pct: Annotated[float, Field(gt=0, le=100)]
    min_duration_h: Annotated[float, Field(ge=0, le=24 * 30)] = 1.0


DEFAULT_GATES: tuple[GateSpec, ...] = (
    GateSpec(name="accuracy", stage="offline", metric="accuracy", threshold=0.95, min_n=1),
    GateSpec(name="p95_latency", stage="shadow", metric="p95_latency", threshold=1.10,
             window_h=1, min_n=400),
    GateSpec(name="error_rate", stage="shadow", metric="error_rate", threshold=0.10,
             floor=0.002, window_h=1, min_n=400),
    GateSpec(name="preference", stage="shadow", metric="preference", threshold=-0.2,
             window_h=1, min_n=100, required=False),
    GateSpec(name="faithfulness", stage="canary", metric="faithfulness", threshold=4.0,
             window_h=24, min_n=200),
    GateSpec(name="p95_latency", stage="canary", metric="p95_latency", threshold=1.10,
             window_h=24, min_n=400),
    GateSpec(name="error_rate", stage="canary", metric="error_rate", threshold=0.10,
             floor=0.002, window_h=24, min_n=400),
    GateSpec(name="csat", stage="canary", metric="csat", threshold=-0.10, window_h=48,
             min_n=300),
    GateSpec(name="invalid_output", stage="shadow", metric="invalid_output", threshold=0.10,
             floor=0.002, window_h=1, min_n=100, required=False, enabled=False),
    GateSpec(name="tool_agreement", stage="shadow", metric="tool_agreement", threshold=0.9,
             window_h=1, min_n=100, required=False, enabled=False),
)  # fmt: skip

DEFAULT_STEPS: tuple[CanaryStep, ...] = (
    CanaryStep(weight_pct=1, min_duration_h=1),
    CanaryStep(weight_pct=5, min_duration_h=2),
    CanaryStep(weight_pct=25, min_duration_h=3),
    CanaryStep(weight_pct=50, min_duration_h=0),
)


class RolloutSettings(_Frozen):
    """The rollout controller (``shadowlab run gates``) and the default plan of every route."""

    #: Gates are evaluated at every multiple of this many seconds of event time.
    tick_s: Annotated[float, Field(gt=0, le=86_400)] = 300.0
    #: The watermark trails the newest stored request by this much, for late events.
    lateness_s: Annotated[float, Field(ge=0, le=86_400)] = 60.0
    #: Requests dated more than this ahead of the controller's wall clock never move its
    #: clock (a producer's skewed or forged clock cannot fast-forward a rollout).
    max_ahead_s: Annotated[float, Field(ge=0, le=86_400)] = 300.0
    #: Wall seconds between looks at ClickHouse for a newer watermark.
    poll_s: Annotated[float, Field(gt=0, le=600)] = 1.0
    #: Family-wise error rate of one rollout, for each of its two errors: a false rollback
    #: is split evenly (Bonferroni) over the enabled gates that can fail, a false promotion
    #: over the required ones.
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    #: The sample size the quantile bounds are tuned to be tightest at, when the route has
    #: no measured traffic yet (otherwise: its traffic over each gate's window).
    t_star: Annotated[float, Field(gt=0)] = 5000.0
    shadow_min_duration_h: Annotated[float, Field(ge=0, le=24 * 30)] = 1.0
    canary_steps: Annotated[tuple[CanaryStep, ...], Field(min_length=1)] = DEFAULT_STEPS
    #: A stage or step held (inconclusive) longer than this raises one alert.
    max_hold_h: Annotated[float, Field(gt=0, le=24 * 90)] = 96.0
    gates: tuple[GateSpec, ...] = DEFAULT_GATES
    #: Slack-compatible incoming webhook for alerts (a secret: it embeds a token).
    webhook_url: SecretStr | None = None
    webhook_timeout_s: Annotated[float, Field(gt=0, le=60)] = 5.0

    @model_validator(mode="after")
    def _unique_gates(self) -> RolloutSettings:
        keys = [g.key for g in self.gates]
        duplicated = sorted({k for k in keys if keys.count(k) > 1})
        if duplicated:
            raise ValueError(f"gates must be unique per stage; duplicated: {duplicated}")
        weights = [s.weight_pct for s in self.canary_steps]
        if weights != sorted(set(weights)):
            raise ValueError(f"canary_steps weights must strictly increase; got {weights}")
        return self


def route_gates(
    rollout: RolloutSettings, overrides: dict[str, GateOverride] | None = None
) -> tuple[GateSpec, ...]:
    """The enabled gates of a route: the plan's gates with the route's overrides applied.

    ``overrides`` is keyed by ``stage.name`` (e.g. ``canary.p95_latency``) or by a bare name,
    which then applies to that gate in every stage.

    Raises:
        ValueError: an override names no gate of the plan.
    """
    overrides = overrides or {}
    known = {g.key for g in rollout.gates} | {g.name for g in rollout.gates}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"gate overrides {unknown} name no gate; gates are: {sorted(known)}")
    out = []
    for gate in rollout.gates:
        for key in (gate.name, gate.key):
            change = overrides.get(key)
            if change is not None:
                gate = gate.model_copy(update=change.model_dump(exclude_none=True))  # noqa: PLW2901
        if gate.enabled:
            out.append(gate)
    return tuple(out)
