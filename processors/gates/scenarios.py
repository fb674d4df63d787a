"""The decision-quality scenarios of ``bench/decisions.py`` and its test, by name.

1 request per second, 20 % of requests rated, 10 % judged, 72 hours, unless named otherwise;
the primary answers in 800 ms (median), fails 1 % of calls, has CSAT 3.75 and faithfulness
4.53. Each regression names the window it must be rolled back within: the canary window
of the gate meant to catch it (or before the canary began).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Final

from processors.gates.montecarlo import DailyCycle, ModelProfile, RolloutOutcome, Traffic, slower

SAME: Final = ModelProfile()
#: A ±40 % daily swing in latency and ±20 % in failure rates (both models alike).
SWING = DailyCycle(latency=0.4, failures=0.2)
#: Judge scores 1..5 of mean 3.79 (the threshold is 4.0).
LOW_FAITHFULNESS = (0.05, 0.08, 0.20, 0.37, 0.30)
#: Where the swing peaks by default: the canary typically begins about 6 h into a rollout
#: (the shadow gates' samples), so its 1 %, 5 % and 25 % steps fall in the slow hours.
SLOW_PEAK_HOUR = 9.0


@dataclass(frozen=True)
class Scenario:
    """One simulated world: the models, the traffic, and what a right decision is."""

    name: str
    candidate: ModelProfile = SAME
    primary: ModelProfile = SAME
    traffic: Traffic = field(default_factory=Traffic)
    #: How the candidate behaves when replayed in shadow, if not as it serves users.
    shadow_candidate: ModelProfile | None = None
    #: ``None``: an identical candidate (should promote); else the event hours after the
    #: canary began by which the regression must be rolled back.
    window_h: float | None = None

    @property
    def regression(self) -> bool:
        """Whether the candidate is worse (should be rolled back)."""
        return self.window_h is not None

    def in_window(self, outcome: RolloutOutcome) -> bool:
        """Rolled back before its window ended (or before the canary began)."""
        if outcome.outcome != "rolled_back" or self.window_h is None:
            return False
        return outcome.canary_hours is None or outcome.hours < outcome.canary_hours + self.window_h


def diurnal(peak_hour: float = SLOW_PEAK_HOUR) -> Traffic:
    """Default traffic with :data:`SWING`, peaking at ``peak_hour``."""
    return Traffic(cycle=replace(SWING, peak_hour=peak_hour))


def scenarios(peak_hour: float = SLOW_PEAK_HOUR) -> dict[str, Scenario]:
    """Every scenario by name; the daily ones peak at ``peak_hour``."""
    hidden = replace(slower(SAME, 0.8), timeout_rate=0.05)
    every = (
        Scenario("aa"),
        Scenario("aa-diurnal", traffic=diurnal(peak_hour)),
        Scenario("aa-low-traffic", traffic=Traffic(rps=100 / 3600)),
        Scenario("p95-30", slower(SAME, 1.3), window_h=24),
        Scenario("p95-30-diurnal", slower(SAME, 1.3), traffic=diurnal(peak_hour), window_h=24),
        Scenario("errors-1-3", replace(SAME, error_rate=0.03), window_h=24),
        Scenario("errors-1-1.5", replace(SAME, error_rate=0.015), window_h=24),
        Scenario("csat-0.2", replace(SAME, csat=(0.07, 0.12, 0.24, 0.33, 0.24)), window_h=48),
        Scenario("faithfulness-3.8", replace(SAME, faithfulness=LOW_FAITHFULNESS), window_h=24),
        Scenario("timeouts-hidden", hidden, replace(SAME, timeout_rate=0.005), window_h=24),
    )
    return {s.name: s for s in every}
