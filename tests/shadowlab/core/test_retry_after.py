"""Retry-After as servers send it: seconds, milliseconds, HTTP dates, LiteLLM's passthrough."""

from __future__ import annotations

import datetime as dt

import pytest

from shadowlab.core.retry_after import retry_after_s

NOW = dt.datetime(2026, 12, 3, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # milliseconds win
        ({"llm_provider-retry-after": "7"}, 7.0),  # the LiteLLM proxy's passthrough
        ({"retry-after": "Thu, 03 Dec 2026 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 02 Dec 2026 12:00:00 GMT"}, 0.0),  # already past
        (
            {"retry-after": "Fri, 31 Dec 9999 23:59:59 GMT"},
            (dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC) - NOW).total_seconds(),
        ),
        ({}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after-ms": "abc", "retry-after": "2"}, 2.0),  # a bad one falls through
    ],
)
def test_the_wait_a_server_asks_for(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_s(headers, now=NOW) == seconds
