"""Helpers for tests of shadowlab and of the services that embed it, shipped with it.

A processor test is then a few lines::

    produce(stack.kafka_config(), "llm.requests", [sample_request()])
    events = read_events(stack.kafka_config(), "llm.requests", RequestEvent, count=1)

- sample events (:func:`sample_request`, :func:`sample_shadow`), :func:`produce`,
  :func:`read_messages`, :func:`read_events`;
- running a role: :func:`run_until` and :func:`running`;
- settings for a test (:func:`test_settings`, :func:`write_config`) and the model simulator
  as a context manager (:func:`simulated_models`);
- the pytest plugin (:mod:`shadowlab.testing.pytest_plugin`: a broker and a chDB engine per
  session), the OpenAI-compatible model simulator (:mod:`shadowlab.testing.model_server`)
  and synthetic downstream traffic for the gates (:mod:`shadowlab.testing.event_traffic`).
"""

from __future__ import annotations

from shadowlab.core.role import Role
from shadowlab.testing.helpers import (
    produce,
    read_events,
    read_messages,
    run_until,
    sample_request,
    sample_shadow,
    wait_for_http,
)

__all__ = [
    "Role",
    "produce",
    "read_events",
    "read_messages",
    "run_until",
    "sample_request",
    "sample_shadow",
    "wait_for_http",
]
