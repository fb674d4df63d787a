"""ClickHouse: the schema (versioned migrations) and the event ↔ row mapping.

Public surface: :func:`open_client`, :func:`apply_migrations`, :func:`insert_events`,
:func:`query_events`, :data:`TABLES`.
"""

from sinks.clickhouse import TABLES, TableSpec, insert_events, open_client, query_events
from sinks.migrations import MIGRATIONS, Migration, applied_versions, apply_migrations

__all__ = [
    "MIGRATIONS",
    "TABLES",
    "Migration",
    "TableSpec",
    "applied_versions",
    "apply_migrations",
    "insert_events",
    "open_client",
    "query_events",
]
