"""The model simulator as a context manager: configured, started on a free port, stopped.

::

    with simulated_models([{"name": "gpt-4o", "latency_median_ms": 400}], time_scale=0.05) as sim:
        settings = make_settings(tmp_path, models=models_at(sim.base_url, "gpt-4o"))

A module-scoped fixture is then three lines, and every test of the module shares the server.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from shadowlab.testing.model_server import ModelProfile, Simulator, SimulatorConfig


def simulator_config(
    models: SimulatorConfig | Iterable[ModelProfile | Mapping[str, Any]],
    *,
    seed: int | None = None,
    time_scale: float | None = None,
) -> SimulatorConfig:
    """A :class:`SimulatorConfig` of ``models`` (profiles or their fields as mappings).

    ``seed`` and ``time_scale`` default to the config's (0 and 1.0 for a list of models).

    Raises:
        pydantic.ValidationError: a profile field is invalid.
    """
    if isinstance(models, SimulatorConfig):
        config = models
    else:
        profiles = [
            m if isinstance(m, ModelProfile) else ModelProfile.model_validate(m) for m in models
        ]
        config = SimulatorConfig(models=profiles)
    update = {k: v for k, v in (("seed", seed), ("time_scale", time_scale)) if v is not None}
    return SimulatorConfig.model_validate({**config.model_dump(), **update}) if update else config


@contextmanager
def simulated_models(
    models: SimulatorConfig | Iterable[ModelProfile | Mapping[str, Any]],
    *,
    seed: int | None = None,
    time_scale: float | None = None,
    host: str = "127.0.0.1",
) -> Iterator[Simulator]:
    """Serve ``models`` (see :func:`simulator_config`) on a free port for the ``with`` block.

    Yields the running :class:`Simulator`: ``base_url`` is what an ``openai`` client and a
    model's ``base_url`` setting take, ``requests_served`` counts the chat calls. It is
    stopped when the block ends, however it ends.
    """
    with Simulator(simulator_config(models, seed=seed, time_scale=time_scale), host=host) as sim:
        yield sim


__all__ = ["simulated_models", "simulator_config"]
