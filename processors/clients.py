"""The ``openai`` client of a configured model endpoint, one way for every role."""

from __future__ import annotations

import openai

from shadowlab.settings import ModelEndpoint


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
