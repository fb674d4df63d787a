"""Demo scenarios: two simulated models, simulated users, and the rollout plan to run.

A scenario is a YAML file (``shadowlab demo --scenario FILE``); the built-in ones live in
``shadowlab/scenarios/`` (``shadowlab demo --list``). Every field has a default, so a scenario
states only what differs from ``good.yaml``, which spells every field out as the example to
copy. The default plan is the user's gates, compressed so a whole rollout needs about 9,000
requests (120 an hour over ~73 hours of event time) instead of a real service's millions:
hourly ticks, a 24-hour shadow stage, canary steps of 10 % and 30 % for 12 hours each, then 50 %
until every canary gate has passed over 48 hours. Its margins are wider than production's
because the samples are smaller (see the README's demo section).
"""

from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas._base import RouteName
from shadowlab.core.errors import ConfigError
from shadowlab.core.plan import CanaryStep, GateOverride, RolloutSettings
from shadowlab.testing.model_server import ModelProfile

Outcome = Literal["promoted", "rolled_back", "rejected", "held"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SimulatedModel(ModelProfile):
    """A simulated model (the simulator's profile), its price, and how users rate it."""

    #: Probabilities of CSAT 1..5 given by users served by this model.
    csat: tuple[float, float, float, float, float] = (0.05, 0.10, 0.20, 0.35, 0.30)
    price_input_per_1k: Annotated[float, Field(ge=0)] = 0.0
    price_output_per_1k: Annotated[float, Field(ge=0)] = 0.0

    def profile(self) -> ModelProfile:
        """The simulator's profile of this model."""
        return ModelProfile.model_validate(
            self.model_dump(exclude={"csat", "price_input_per_1k", "price_output_per_1k"})
        )


class TrafficShape(_Frozen):
    """The simulated production traffic of the route."""

    #: Event time of the first request.
    start: dt.datetime = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    #: Mean requests per hour of event time, and the daily swing around it (0: flat).
    requests_per_hour: Annotated[float, Field(gt=0, le=100_000)] = 120.0
    diurnal_amplitude: Annotated[float, Field(ge=0, lt=1)] = 0.5
    #: The most event time replayed: a rollout not concluded by then is ``held``.
    max_hours: Annotated[float, Field(gt=0, le=24 * 60)] = 120.0
    #: Distinct users, and the mean number of requests of one session.
    users: Annotated[int, Field(ge=1)] = 3000
    session_requests: Annotated[float, Field(ge=1)] = 3.0
    #: Share of requests a user rates (CSAT 1–5).
    feedback_rate: Annotated[float, Field(ge=0, le=1)] = 0.5


#: The demo's gates: the user's, with windows and margins sized to the demo's traffic.
DEMO_GATES: dict[str, GateOverride] = {
    "shadow.p95_latency": GateOverride(threshold=1.15, window_h=24, min_n=300),
    "shadow.error_rate": GateOverride(threshold=0.5, floor=0.02, window_h=24, min_n=300),
    "shadow.preference": GateOverride(threshold=-0.6, window_h=24, min_n=50),
    "canary.p95_latency": GateOverride(threshold=1.2, window_h=48, min_n=300),
    "canary.error_rate": GateOverride(threshold=0.5, floor=0.02, window_h=48, min_n=300),
    "canary.faithfulness": GateOverride(threshold=4.0, window_h=48, min_n=50),
    "canary.csat": GateOverride(threshold=-0.3, window_h=48, min_n=150),
}

DEMO_PLAN = RolloutSettings(
    tick_s=3600,
    lateness_s=0,
    poll_s=0.02,
    shadow_min_duration_h=24,
    canary_steps=(
        CanaryStep(weight_pct=10, min_duration_h=12),
        CanaryStep(weight_pct=30, min_duration_h=12),
        CanaryStep(weight_pct=50, min_duration_h=0),
    ),
)


class Scenario(_Frozen):
    """One demo: what the models do, what users do, and the plan that judges the candidate."""

    name: Annotated[str, Field(min_length=1, max_length=64)]
    description: str = ""
    #: What the scenario is meant to show (checked by the tests), and by which gate.
    expect: Outcome = "promoted"
    expect_gate: str | None = None
    seed: int = 7
    route: RouteName = "support-answer"
    primary: SimulatedModel = SimulatedModel(
        name="gpt-4", latency_median_ms=700, latency_p95_ms=1470, error_rate=0.01,
        p_correct=0.9, p_faithful=0.97, price_input_per_1k=0.03, price_output_per_1k=0.06,
    )  # fmt: skip
    candidate: SimulatedModel = SimulatedModel(
        name="gpt-4o", latency_median_ms=650, latency_p95_ms=1365, error_rate=0.01,
        p_correct=0.9, p_faithful=0.97, price_input_per_1k=0.0025, price_output_per_1k=0.01,
    )  # fmt: skip
    #: The simulator's time compression: 0.01 sleeps 1 % of each simulated latency (the
    #: simulated latency is what gets recorded).
    time_scale: Annotated[float, Field(gt=0, le=1)] = 0.002
    traffic: TrafficShape = TrafficShape()
    #: Golden items generated for the offline evaluation.
    golden_items: Annotated[int, Field(ge=10, le=10_000)] = 80
    #: Shares of requests the judge scores for faithfulness, and shadow pairs it compares.
    judge_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.25
    pairwise_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.05
    #: The rollout plan (``rollout:`` settings) and the route's gate overrides.
    rollout: RolloutSettings = DEMO_PLAN
    gates: dict[str, GateOverride] = Field(default_factory=lambda: dict(DEMO_GATES))

    def models(self) -> list[SimulatedModel]:
        """The primary, the candidate and the judge, as the simulator serves them."""
        judge = SimulatedModel(
            name="judge", judge=True, latency_median_ms=400, latency_p95_ms=800,
            price_input_per_1k=0.002, price_output_per_1k=0.008,
        )  # fmt: skip
        return [self.primary, self.candidate, judge]


def _builtin_dir() -> Path:
    return Path(str(resources.files("shadowlab") / "scenarios"))


def builtin_scenarios() -> dict[str, Path]:
    """The built-in scenario files by name."""
    return {p.stem: p for p in sorted(_builtin_dir().glob("*.yaml"))}


def load_scenario(name_or_path: str) -> Scenario:
    """A built-in scenario by name, or a scenario YAML file.

    Raises:
        ConfigError: no such scenario or file, or the file is invalid (naming the field).
    """
    builtins = builtin_scenarios()
    path = builtins.get(name_or_path) or Path(name_or_path)
    if not path.is_file():
        raise ConfigError(
            f"no scenario {name_or_path!r}: built-in ones are {', '.join(builtins)}; "
            "or give the path of a scenario YAML file"
        )
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Scenario.model_validate(data)
    except yaml.YAMLError as exc:
        raise ConfigError(f"scenario {path} is not valid YAML: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ConfigError(f"scenario {path} is invalid: {problems}") from None
