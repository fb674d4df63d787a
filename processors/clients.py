"""The ``openai`` client of a configured model endpoint, one way for every role."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import openai

from shadowlab.core.headers import LATENCY_HEADER, TTFT_HEADER
from shadowlab.core.settings import ModelEndpoint


def model_client(endpoint: ModelEndpoint, *, max_retries: int) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` client for ``endpoint``: its URL, timeout and API key.

    ``max_retries`` are the client's own (connection errors, 408, 409, 429 with
    ``Retry-After``, 5xx, with exponential backoff); a role that retries itself passes 0.

    Raises:
        ConfigError: ``api_key_env`` names an environment variable that is not set.
    """
    key = endpoint.api_key()
    return openai.AsyncOpenAI(
        base_url=endpoint.base_url,
        api_key=key.get_secret_value() if key is not None else "none",
        timeout=endpoint.timeout_s,
        max_retries=max_retries,
    )


def reported_timings(headers: Mapping[str, str] | None) -> tuple[float | None, float | None]:
    """(latency, TTFT) in ms reported by a time-compressing simulator, else ``(None, None)``.

    A real endpoint never sends these headers, so its calls keep their wall-clock timings; a
    simulator replaying 100× faster than real time reports the latencies it simulated.
    """
    if headers is None:
        return None, None
    timings: list[float | None] = []
    for name in (LATENCY_HEADER, TTFT_HEADER):
        value: float | None = None
        with contextlib.suppress(TypeError, ValueError):
            value = float(headers.get(name) or "")
        timings.append(value)
    return timings[0], timings[1]
