"""Settings and config files for tests, built from a few sections with test defaults.

A role test builds its :class:`~shadowlab.core.settings.Settings` in one call::

    settings = make_settings(
        tmp_path,
        models=models_at(sim.base_url, "gpt-4", "gpt-4o", timeout_s=10),
        routes=[route_config("gpt-4", "gpt-4o")],
        topics=unique_topics(),
    )

and a test of the command line writes the same sections as the YAML file it passes to
``--config``::

    config = write_config(tmp_path / "shadowlab.yaml", build_config(tmp_path / "data", kafka=kafka))

Every value a test gives is kept as given; the builders only spell the repeated parts once
(the librdkafka dict → ``kafka.bootstrap_servers``, paths → strings, a model list at one URL,
a route, unique topic names).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from shadowlab.core.settings import Settings, TopicSettings, load_settings

#: The route of :func:`~shadowlab.testing.helpers.sample_request` and ``sample_shadow``.
SAMPLE_ROUTE = "support-answer"
#: A base URL nothing listens on (the discard port): for models a test never calls.
UNREACHABLE_URL = "http://127.0.0.1:9/v1"
#: The keys of every event topic (:meth:`TopicSettings.event_topics`).
EVENT_TOPICS = tuple(TopicSettings().event_topics())


def models_at(base_url: str, *names: str, **fields: Any) -> list[dict[str, Any]]:
    """The ``models`` section: each of ``names`` at ``base_url``, with the same ``fields``.

    e.g. ``models_at(sim.base_url, "gpt-4", "gpt-4o", price_input_per_1k=0.01)``.
    """
    return [{"name": name, "base_url": base_url, **fields} for name in names]


def route_config(
    primary: str,
    *candidates: str | Mapping[str, Any],
    name: str = SAMPLE_ROUTE,
    **fields: Any,
) -> dict[str, Any]:
    """One entry of ``routes``: ``name`` served by ``primary``, shadowing ``candidates``.

    A candidate is a model name or a candidate mapping (``{"model": ..., "sample_rate": ...}``).
    """
    shadowed = [{"model": c} if isinstance(c, str) else dict(c) for c in candidates]
    return {"name": name, "primary": primary, "candidates": shadowed, **fields}


def unique_topics(*keys: str, suffix: str | None = None, **fields: Any) -> dict[str, Any]:
    """The ``topics`` section with a fresh name for each of ``keys`` (default: every event topic).

    Names are ``<key>-<suffix>`` (a random suffix unless given), so tests sharing the session
    broker never read each other's events; ``fields`` are other topic settings, e.g.
    ``partitions=1``.
    """
    tag = suffix or uuid.uuid4().hex[:8]
    return {**{key: f"{key}-{tag}" for key in keys or EVENT_TOPICS}, **fields}


def build_config(
    data_dir: Path | str | None = None,
    *,
    kafka: Mapping[str, str] | str | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """Settings as plain data (what ``shadowlab.yaml`` holds), ready for YAML or keywords.

    Args:
        data_dir: the ``data_dir`` setting (left unset when ``None``).
        kafka: the broker: a librdkafka connection (the plugin's ``kafka`` fixture), a
            ``host:port`` string, or a ``kafka`` section as is (``{"bootstrap_servers": ...}``).
        sections: every other section or setting, as given (``models``, ``routes``,
            ``topics``, ``shadow``, ``judge``, ...).
    """
    data: dict[str, Any] = {}
    if data_dir is not None:
        data["data_dir"] = str(data_dir)
    if isinstance(kafka, str):
        data["kafka"] = {"bootstrap_servers": kafka}
    elif kafka is not None and "bootstrap.servers" in kafka:
        data["kafka"] = {"bootstrap_servers": kafka["bootstrap.servers"]}
    elif kafka is not None:
        data["kafka"] = dict(kafka)
    data.update(sections)
    return data


def make_settings(
    data_dir: Path | str | None = None,
    *,
    kafka: Mapping[str, str] | str | None = None,
    **sections: Any,
) -> Settings:
    """:class:`Settings` of :func:`build_config`'s sections, through :func:`load_settings`.

    They win over the environment and ``.env`` as keyword arguments of ``load_settings`` do.
    (Not named ``test_settings``: pytest would collect that from a test module's imports.)

    Raises:
        ConfigError: a value is invalid.
    """
    return load_settings(None, **build_config(data_dir, kafka=kafka, **sections))


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` (e.g. :func:`build_config`'s) as a YAML config file; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(data), sort_keys=False), encoding="utf-8")
    return path


__all__ = [
    "EVENT_TOPICS",
    "SAMPLE_ROUTE",
    "UNREACHABLE_URL",
    "build_config",
    "make_settings",
    "models_at",
    "route_config",
    "unique_topics",
    "write_config",
]
