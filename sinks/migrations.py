"""Versioned ClickHouse migrations: one table per event type, applied once each.

Idempotent at-least-once writes
-------------------------------
Kafka delivery is at-least-once (offsets are committed only after an insert), so the same
event can be inserted twice. Every event table is a ``ReplacingMergeTree`` whose sorting key
ends with the event's natural key (``request_id``, ``(request_id, candidate)``,
``judgement_id``, ``(route, version)`` …): rows with the same key are one event, and queries
read with ``FINAL`` (or through the de-duplicating views), so a duplicate never changes a
result, while merges remove it from disk in the background.

We chose this over insert deduplication tokens because a token de-duplicates a whole
*block*: after a crash the sink re-reads from the last committed offset and may cut its
batches differently, so the same event would arrive in a block with another token. The
natural key holds whatever the batching. For analysts, ``<table>_latest`` views (migration 2)
read ``FINAL`` for them, so a plain ``SELECT … FROM requests_latest`` never sees a duplicate.

The sorting key starts ``(route, event_time, …)``: gate queries filter one route over an
event-time window. Tables are partitioned by day of event time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError

from shadowlab.core.errors import MigrationError
from sinks.rollups import ROLLUP_STATEMENTS, ROLLUP_USAGE_STATEMENTS

_MODEL_CALL_COLUMNS = """
    answer Nullable(String) CODEC(ZSTD(3)),
    latency_ms Float64,
    ttft_ms Nullable(Float64),
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cost_usd Float64,
    status LowCardinality(String),
    error_type Nullable(String),"""

#: The usage columns that are null when a server reported no usage (migration 9).
_USAGE_COLUMNS = (
    ("prompt_tokens", "UInt32"),
    ("completion_tokens", "UInt32"),
    ("cost_usd", "Float64"),
)

_TAIL = """
    schema_version UInt16,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree"""


@dataclass(frozen=True)
class Migration:
    """One schema change: statements with ``{db}`` standing for the database name."""

    version: int
    name: str
    statements: tuple[str, ...]


_EVENT_TABLES = (
    "requests",
    "shadow_results",
    "comparisons",
    "judgements",
    "feedback",
    "routing_flags",
    "gate_decisions",
    "alerts",
)

#: Each identity-checked table's id, as :func:`sinks.identity.row_ids` joins it (\\x1f).
_IDENTITY_IDS = {
    "requests": "request_id",
    "shadow_results": "concat(request_id, '\\x1f', candidate)",
    "comparisons": "concat(request_id, '\\x1f', candidate_model)",
    "judgements": "judgement_id",
    "feedback": "feedback_id",
    "routing_flags": "concat(route, '\\x1f', toString(version))",
}
_IDENTITY_TIMES = {"routing_flags": "changed_at"}
#: A backfilled digest: empty (matches any content) but for the rank of a ranked table.
_IDENTITY_DIGESTS = {"comparisons": "concat(status, ':')"}

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "event tables",
        (
            """CREATE TABLE IF NOT EXISTS {db}.requests (
    request_id String,
    event_time DateTime64(6, 'UTC'),
    route LowCardinality(String),
    user_key Nullable(String),
    session_id Nullable(String),
    tenant Nullable(String),
    request String CODEC(ZSTD(3)),
    context_documents String CODEC(ZSTD(3)),
    model LowCardinality(String),
    arm LowCardinality(String),
    flags_version Nullable(UInt64),
    replayable Bool,
    metadata Map(String, String),"""
            + _MODEL_CALL_COLUMNS
            + _TAIL
            + """
PARTITION BY toDate(event_time)
ORDER BY (route, event_time, request_id)""",
            """CREATE TABLE IF NOT EXISTS {db}.shadow_results (
    request_id String,
    event_time DateTime64(6, 'UTC'),
    replayed_at DateTime64(6, 'UTC'),
    route LowCardinality(String),
    candidate LowCardinality(String),
    primary_model LowCardinality(String),
    attempts UInt16,"""
            + _MODEL_CALL_COLUMNS
            + _TAIL
            + """
PARTITION BY toDate(event_time)
ORDER BY (route, event_time, request_id, candidate)""",
            """CREATE TABLE IF NOT EXISTS {db}.comparisons (
    request_id String,
    event_time DateTime64(6, 'UTC'),
    route LowCardinality(String),
    status LowCardinality(String),
    primary_model LowCardinality(String),
    candidate_model LowCardinality(String),
    primary_status LowCardinality(String),
    candidate_status LowCardinality(Nullable(String)),
    primary_latency_ms Float64,
    candidate_latency_ms Nullable(Float64),
    primary_ttft_ms Nullable(Float64),
    candidate_ttft_ms Nullable(Float64),
    primary_tokens UInt32,
    candidate_tokens Nullable(UInt32),
    primary_cost_usd Float64,
    candidate_cost_usd Nullable(Float64),
    exact_match Nullable(Bool),
    similarity Nullable(Float64),
    length_ratio Nullable(Float64),
    primary_refusal Nullable(Bool),
    candidate_refusal Nullable(Bool),
    primary_json_valid Nullable(Bool),
    candidate_json_valid Nullable(Bool),"""
            + _TAIL
            + """
PARTITION BY toDate(event_time)
ORDER BY (route, event_time, request_id, candidate_model)""",
            """CREATE TABLE IF NOT EXISTS {db}.judgements (
    judgement_id String,
    request_id String,
    event_time DateTime64(6, 'UTC'),
    route LowCardinality(String),
    kind LowCardinality(String),
    model LowCardinality(String),
    arm LowCardinality(String),
    judge_model LowCardinality(String),
    score Nullable(Float64),
    claims_total Nullable(UInt32),
    claims_supported Nullable(UInt32),
    preference LowCardinality(Nullable(String)),
    no_score_reason Nullable(String),
    judge_cost_usd Float64,"""
            + _TAIL
            + """
PARTITION BY toDate(event_time)
ORDER BY (route, event_time, judgement_id)""",
            """CREATE TABLE IF NOT EXISTS {db}.feedback (
    feedback_id String,
    request_id String,
    event_time DateTime64(6, 'UTC'),
    route LowCardinality(String),
    model LowCardinality(Nullable(String)),
    arm LowCardinality(Nullable(String)),
    user_key Nullable(String),
    csat Nullable(UInt8),
    thumbs LowCardinality(Nullable(String)),
    comment Nullable(String),"""
            + _TAIL
            + """
PARTITION BY toDate(event_time)
ORDER BY (route, event_time, feedback_id)""",
            """CREATE TABLE IF NOT EXISTS {db}.routing_flags (
    route LowCardinality(String),
    version UInt64,
    stage LowCardinality(String),
    primary LowCardinality(String),
    canary LowCardinality(Nullable(String)),
    canary_weight_bp UInt16,
    override LowCardinality(Nullable(String)),
    salt String,
    shadow_candidates Array(String),
    changed_at DateTime64(6, 'UTC'),
    changed_by String,
    reason String,"""
            + _TAIL
            + """
PARTITION BY toYYYYMM(changed_at)
ORDER BY (route, version)""",
            """CREATE TABLE IF NOT EXISTS {db}.gate_decisions (
    decision_id String,
    route LowCardinality(String),
    gate LowCardinality(String),
    stage LowCardinality(String),
    window_start DateTime64(6, 'UTC'),
    window_end DateTime64(6, 'UTC'),
    decided_at DateTime64(6, 'UTC'),
    n UInt64,
    value Nullable(Float64),
    baseline Nullable(Float64),
    threshold Nullable(Float64),
    ci_low Nullable(Float64),
    ci_high Nullable(Float64),
    outcome LowCardinality(String),
    action LowCardinality(String),
    sql String CODEC(ZSTD(3)),
    flags_version Nullable(UInt64),
    candidate LowCardinality(Nullable(String)),
    baseline_model LowCardinality(Nullable(String)),"""
            + _TAIL
            + """
PARTITION BY toDate(decided_at)
ORDER BY (route, decided_at, decision_id)""",
            """CREATE TABLE IF NOT EXISTS {db}.alerts (
    alert_id String,
    route LowCardinality(String),
    kind LowCardinality(String),
    severity LowCardinality(String),
    event_time DateTime64(6, 'UTC'),
    message String,
    gate Nullable(String),
    decision_id Nullable(String),
    flags_version Nullable(UInt64),"""
            + _TAIL
            + """
PARTITION BY toDate(event_time)
ORDER BY (route, event_time, alert_id)""",
        ),
    ),
    Migration(
        2,
        "de-duplicating views",
        tuple(
            f"CREATE VIEW IF NOT EXISTS {{db}}.{table}_latest AS "  # noqa: S608 - fixed names
            f"SELECT * FROM {{db}}.{table} FINAL"
            for table in _EVENT_TABLES
        ),
    ),
    Migration(3, "per-minute rollups", ROLLUP_STATEMENTS),
    Migration(
        4,
        "rollout state in routing flags",
        (
            "ALTER TABLE {db}.routing_flags ADD COLUMN IF NOT EXISTS paused Bool DEFAULT false "
            "AFTER reason",
            "ALTER TABLE {db}.routing_flags ADD COLUMN IF NOT EXISTS "
            "stage_since Nullable(DateTime64(6, 'UTC')) AFTER paused",
            "ALTER TABLE {db}.routing_flags ADD COLUMN IF NOT EXISTS "
            "step_since Nullable(DateTime64(6, 'UTC')) AFTER stage_since",
        ),
    ),
    Migration(
        5,
        "golden-set runs",
        (
            """CREATE TABLE IF NOT EXISTS {db}.golden_runs (
    run_id String,
    started_at DateTime64(6, 'UTC'),
    finished_at DateTime64(6, 'UTC'),
    golden_file String,
    golden_sha256 String,
    route LowCardinality(Nullable(String)),
    matcher LowCardinality(String),
    role LowCardinality(String),
    model LowCardinality(String),
    items UInt32,
    accuracy Float64,
    faithfulness Nullable(Float64),
    faithfulness_scored UInt32,
    p50_ms Nullable(Float64),
    p95_ms Nullable(Float64),
    error_rate Float64,
    cost_per_1k_usd Float64,
    gate_outcome LowCardinality(String),
    gate_ratio Nullable(Float64),
    gate_ci_low Nullable(Float64),
    gate_ci_high Nullable(Float64),
    gate_threshold Float64,
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (run_id, role)""",
            """CREATE TABLE IF NOT EXISTS {db}.golden_items (
    run_id String,
    role LowCardinality(String),
    model LowCardinality(String),
    item_id String,
    status LowCardinality(String),
    correct Bool,
    answer Nullable(String) CODEC(ZSTD(3)),
    latency_ms Float64,
    prompt_tokens UInt32,
    completion_tokens UInt32,
    cost_usd Float64,
    faithfulness Nullable(Float64),
    error Nullable(String),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (run_id, role, item_id)""",
        ),
    ),
    Migration(
        6,
        "event identities",
        (
            """CREATE TABLE IF NOT EXISTS {db}.event_ids (
    table_name LowCardinality(String),
    id String,
    content_sha256 String,
    event_time DateTime64(6, 'UTC'),
    inserted_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (table_name, id)""",
            *(
                f"INSERT INTO {{db}}.event_ids (table_name, id, content_sha256, event_time) "  # noqa: S608 - fixed names
                f"SELECT '{table}', {expression}, {_IDENTITY_DIGESTS.get(table, repr(''))}, "
                f"{_IDENTITY_TIMES.get(table, 'event_time')} "
                f"FROM {{db}}.{table}"
                for table, expression in _IDENTITY_IDS.items()
            ),
        ),
    ),
    Migration(
        7,
        "gate margins and decision ETAs",
        (
            "ALTER TABLE {db}.gate_decisions ADD COLUMN IF NOT EXISTS margin String DEFAULT '' "
            "AFTER baseline_model",
            "ALTER TABLE {db}.gate_decisions ADD COLUMN IF NOT EXISTS "
            "needed_n Nullable(UInt64) AFTER margin",
            "ALTER TABLE {db}.gate_decisions ADD COLUMN IF NOT EXISTS "
            "eta_h Nullable(Float64) AFTER needed_n",
        ),
    ),
    Migration(
        8,
        "tool calls",
        (
            "ALTER TABLE {db}.requests ADD COLUMN IF NOT EXISTS "
            "tool_calls Nullable(String) CODEC(ZSTD(3)) AFTER error_type",
            "ALTER TABLE {db}.shadow_results ADD COLUMN IF NOT EXISTS "
            "tool_calls Nullable(String) CODEC(ZSTD(3)) AFTER error_type",
            "ALTER TABLE {db}.comparisons ADD COLUMN IF NOT EXISTS "
            "tool_calls_match Nullable(Bool) AFTER candidate_json_valid",
        ),
    ),
    Migration(
        9,
        "unknown usage and schema matching",
        (
            *(
                f"ALTER TABLE {{db}}.{table} MODIFY COLUMN {column} Nullable({kind})"
                for table in ("requests", "shadow_results")
                for column, kind in _USAGE_COLUMNS
            ),
            *(
                f"ALTER TABLE {{db}}.{table} ADD COLUMN IF NOT EXISTS "
                "usage_known Bool DEFAULT true AFTER cost_usd"
                for table in ("requests", "shadow_results")
            ),
            "ALTER TABLE {db}.comparisons MODIFY COLUMN primary_tokens Nullable(UInt32)",
            "ALTER TABLE {db}.comparisons MODIFY COLUMN primary_cost_usd Nullable(Float64)",
            "ALTER TABLE {db}.comparisons ADD COLUMN IF NOT EXISTS "
            "primary_schema_valid Nullable(Bool) AFTER candidate_json_valid",
            "ALTER TABLE {db}.comparisons ADD COLUMN IF NOT EXISTS "
            "candidate_schema_valid Nullable(Bool) AFTER primary_schema_valid",
        ),
    ),
    Migration(
        10,
        "unknown usage in rollups and golden items",
        (
            *(
                f"ALTER TABLE {{db}}.golden_items MODIFY COLUMN {column} Nullable({kind})"
                for column, kind in _USAGE_COLUMNS
            ),
            "ALTER TABLE {db}.golden_items ADD COLUMN IF NOT EXISTS "
            "usage_known Bool DEFAULT true AFTER cost_usd",
            *ROLLUP_USAGE_STATEMENTS,
        ),
    ),
)


def _ledger_ddl(db: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations ("
        "version UInt32, name String, applied_at DateTime64(3, 'UTC')"
        ") ENGINE = ReplacingMergeTree ORDER BY version"
    )


def applied_versions(client: Client, database: str) -> set[int]:
    """Return the migration versions recorded as applied in ``database``."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(_ledger_ddl(database))
    rows = client.query(f"SELECT version FROM {database}.schema_migrations FINAL").result_rows  # noqa: S608 - identifier checked by settings
    return {int(row[0]) for row in rows}


def apply_migrations(
    client: Client, database: str, migrations: tuple[Migration, ...] = MIGRATIONS
) -> list[int]:
    """Apply the migrations not yet recorded in ``database``; a second call is a no-op.

    Every statement is ``IF NOT EXISTS``, so two processes migrating at once are harmless.

    Returns:
        The versions applied by this call, in order.

    Raises:
        MigrationError: naming the migration and the ClickHouse error.
    """
    done = applied_versions(client, database)
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in done:
            continue
        for statement in migration.statements:
            try:
                client.command(statement.format(db=database))
            except DriverError as exc:
                raise MigrationError(
                    f"migration {migration.version} ({migration.name}) failed: {exc}"
                ) from None
        client.insert(
            f"{database}.schema_migrations",
            [[migration.version, migration.name, dt.datetime.now(dt.UTC)]],
            column_names=["version", "name", "applied_at"],
        )
        applied.append(migration.version)
    return applied
