"""Per-minute rollups by route, model and arm that a redelivered event never double-counts.

A plain materialized view aggregates each *inserted block*, so an event the sink inserts
twice (at-least-once delivery) would be counted twice in it. These rollups are *refreshable*
materialized views instead: every minute each one recomputes, from the de-duplicated
(``FINAL``) event table, exactly the minutes that received rows in the last hour, and
appends them to a ``ReplacingMergeTree(refreshed_at)`` target, where the newest computation
of a minute replaces the older ones. So a rollup row always equals an aggregate of the
distinct events, and read ``FINAL`` it is exact; a minute is at most one refresh behind.

- ``calls_1m``: (route, model, arm, minute) → calls, errors, timeouts, latency quantile state
  (``quantilesTiming``: deterministic, exact below 1 s and within 16 ms up to 30 s, with
  slower calls counted as 30 s), latency sum, cost and tokens (of the calls whose usage is
  known; ``usage_unknown`` counts the others, so the sums are lower bounds when it is not 0).
  Production requests have
  their arm (primary, canary, override); shadow replays are the arm ``shadow``.
- ``feedback_1m``: (route, model, arm, minute) → feedback count, CSAT sum and count, thumbs.

Merge a state over any span with ``quantilesTimingMerge(0.5, 0.95, 0.99)(latency_quantiles)``.
``SYSTEM REFRESH VIEW db.calls_1m_mv`` brings one up to date at once.
"""

from __future__ import annotations

#: Minutes are recomputed when one of their rows was inserted within this span.
RECOMPUTE_SPAN = "INTERVAL 1 HOUR"

_CALLS = """SELECT route, {model} AS model, {arm} AS arm, toStartOfMinute(event_time) AS minute,
    count() AS calls, countIf(status = 'error') AS errors,
    countIf(status = 'timeout') AS timeouts,
    quantilesTimingState(0.5, 0.95, 0.99)(latency_ms) AS latency_quantiles,
    sum(latency_ms) AS latency_sum_ms, {usage},
    now64(3) AS refreshed_at
FROM {{db}}.{table} FINAL {where}
GROUP BY route, model, arm, minute"""

_FEEDBACK = """SELECT route, ifNull(model, '') AS model, ifNull(arm, '') AS arm,
    toStartOfMinute(event_time) AS minute, count() AS feedback,
    count(csat) AS csat_n, sum(ifNull(csat, 0)) AS csat_sum,
    countIf(thumbs = 'up') AS thumbs_up, countIf(thumbs = 'down') AS thumbs_down,
    now64(3) AS refreshed_at
FROM {{db}}.feedback FINAL {where}
GROUP BY route, model, arm, minute"""


def _recent(table: str) -> str:
    return (
        f"WHERE (route, toStartOfMinute(event_time)) IN (SELECT route, "  # noqa: S608 - fixed names
        f"toStartOfMinute(event_time) FROM {{db}}.{table} "
        f"WHERE inserted_at >= now64(3) - {RECOMPUTE_SPAN})"
    )


#: Migration 3's sums, from before usage could be unknown.
_USAGE_V3 = """sum(cost_usd) AS cost_sum_usd,
    sum(prompt_tokens) AS prompt_tokens_sum, sum(completion_tokens) AS completion_tokens_sum"""
#: Since migration 9: the sums of the calls whose usage is known, and how many are not.
_USAGE = """sum(ifNull(cost_usd, 0)) AS cost_sum_usd,
    sum(ifNull(prompt_tokens, 0)) AS prompt_tokens_sum,
    sum(ifNull(completion_tokens, 0)) AS completion_tokens_sum,
    countIf(NOT usage_known) AS usage_unknown"""


def _calls_select(recent_only: bool, usage: str = _USAGE) -> str:
    parts = [
        _CALLS.format(
            model=model,
            arm=arm,
            table=table,
            where=_recent(table) if recent_only else "",
            usage=usage,
        )
        for table, model, arm in (
            ("requests", "model", "arm"),
            ("shadow_results", "candidate", "'shadow'"),
        )
    ]
    return "\nUNION ALL\n".join(parts)


def _feedback_select(recent_only: bool) -> str:
    return _FEEDBACK.format(where=_recent("feedback") if recent_only else "")


ROLLUP_STATEMENTS: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS {db}.calls_1m (
    route LowCardinality(String),
    model LowCardinality(String),
    arm LowCardinality(String),
    minute DateTime('UTC'),
    calls UInt64,
    errors UInt64,
    timeouts UInt64,
    latency_quantiles AggregateFunction(quantilesTiming(0.5, 0.95, 0.99), Float64),
    latency_sum_ms Float64,
    cost_sum_usd Float64,
    prompt_tokens_sum UInt64,
    completion_tokens_sum UInt64,
    refreshed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toYYYYMM(minute)
ORDER BY (route, minute, model, arm)""",
    """CREATE TABLE IF NOT EXISTS {db}.feedback_1m (
    route LowCardinality(String),
    model LowCardinality(String),
    arm LowCardinality(String),
    minute DateTime('UTC'),
    feedback UInt64,
    csat_n UInt64,
    csat_sum Float64,
    thumbs_up UInt64,
    thumbs_down UInt64,
    refreshed_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(refreshed_at)
PARTITION BY toYYYYMM(minute)
ORDER BY (route, minute, model, arm)""",
    # backfill what the tables already hold, then keep up every minute
    "INSERT INTO {db}.calls_1m " + _calls_select(recent_only=False, usage=_USAGE_V3),
    "INSERT INTO {db}.feedback_1m " + _feedback_select(recent_only=False),
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.calls_1m_mv REFRESH EVERY 1 MINUTE "
    "APPEND TO {db}.calls_1m AS " + _calls_select(recent_only=True, usage=_USAGE_V3),
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.feedback_1m_mv REFRESH EVERY 1 MINUTE "
    "APPEND TO {db}.feedback_1m AS " + _feedback_select(recent_only=True),
)

#: Migration 9: ``calls_1m`` counts the calls of unknown usage (their tokens and cost are
#: not in the sums, which are then lower bounds), and its view is made again to read the
#: nullable usage columns.
ROLLUP_USAGE_STATEMENTS: tuple[str, ...] = (
    "ALTER TABLE {db}.calls_1m ADD COLUMN IF NOT EXISTS usage_unknown UInt64 DEFAULT 0 "
    "AFTER completion_tokens_sum",
    "DROP VIEW IF EXISTS {db}.calls_1m_mv",
    "CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.calls_1m_mv REFRESH EVERY 1 MINUTE "
    "APPEND TO {db}.calls_1m AS " + _calls_select(recent_only=True),
)

#: The refreshable views, for ``SYSTEM REFRESH VIEW`` / ``SYSTEM WAIT VIEW``.
ROLLUP_VIEWS = ("calls_1m_mv", "feedback_1m_mv")
