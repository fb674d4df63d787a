"""How long a rate-limited server asks us to wait, from the headers servers actually send.

``retry-after-ms`` (OpenAI's milliseconds), ``retry-after`` (seconds, or an HTTP date), and
``llm_provider-retry-after`` (the LiteLLM proxy's name for its upstream's ``retry-after``:
it sends no ``retry-after`` of its own), in that order. A value that is not a finite,
non-negative number of seconds (or a dated HTTP date) counts as absent, so the caller's own
backoff applies; a date in the past is 0.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import math
from collections.abc import Mapping

_SECONDS_HEADERS = ("retry-after", "llm_provider-retry-after")


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _date_seconds(value: str, now: dt.datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, (when - now).total_seconds())


def retry_after_s(headers: Mapping[str, str], *, now: dt.datetime) -> float | None:
    """Seconds to wait before retrying, as the server said, or None when it said nothing usable.

    ``headers`` is looked up case-insensitively when it is an ``httpx`` headers object; a
    plain mapping should have lower-case names.
    """
    millis = _number(headers.get("retry-after-ms") or "")
    if millis is not None:
        return millis / 1000
    for name in _SECONDS_HEADERS:
        value = (headers.get(name) or "").strip()
        if value:
            seconds = _number(value)
            if seconds is None:
                seconds = _date_seconds(value, now)
            if seconds is not None:
                return seconds
    return None
