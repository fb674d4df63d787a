"""Helpers for tests of shadowlab and of the services that embed it, shipped with it.

A processor test is then a few lines::

    produce(stack.kafka_config(), "llm.requests", [sample_request()])
    events = read_events(stack.kafka_config(), "llm.requests", RequestEvent, count=1)

- sample events (:func:`sample_request`, :func:`sample_shadow`), :func:`produce`,
  :func:`read_messages`, :func:`read_events`;
- running a role: :func:`running` (a context manager), :func:`run_until`, and waiting on a
  condition with :func:`wait_until` (never a fixed sleep);
- settings for a test (:mod:`shadowlab.testing.configs`: :func:`make_settings`,
  :func:`build_config`, :func:`write_config`, :func:`models_at`, :func:`route_config`,
  :func:`unique_topics`) and the model simulator as a context manager
  (:func:`simulated_models`);
- the pytest plugin (:mod:`shadowlab.testing.pytest_plugin`: a broker and a chDB engine per
  session), the OpenAI-compatible model simulator (:mod:`shadowlab.testing.model_server`)
  and synthetic downstream traffic for the gates (:mod:`shadowlab.testing.event_traffic`).
"""

from __future__ import annotations

from shadowlab.core.role import Role
from shadowlab.testing.configs import (
    SAMPLE_ROUTE,
    UNREACHABLE_URL,
    build_config,
    make_settings,
    models_at,
    route_config,
    unique_topics,
    write_config,
)
from shadowlab.testing.helpers import (
    emitted_requests,
    end_offsets,
    group_lag,
    is_running,
    produce,
    read_events,
    read_messages,
    replay_once,
    run_until,
    running,
    sample_request,
    sample_shadow,
    wait_for_http,
    wait_until,
)
from shadowlab.testing.models import simulated_models, simulator_config

__all__ = [
    "SAMPLE_ROUTE",
    "UNREACHABLE_URL",
    "Role",
    "build_config",
    "emitted_requests",
    "end_offsets",
    "group_lag",
    "is_running",
    "make_settings",
    "models_at",
    "produce",
    "read_events",
    "read_messages",
    "replay_once",
    "route_config",
    "run_until",
    "running",
    "sample_request",
    "sample_shadow",
    "simulated_models",
    "simulator_config",
    "unique_topics",
    "wait_for_http",
    "wait_until",
    "write_config",
]
