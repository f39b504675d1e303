"""The ecosystem's ``market_data`` schema in PostgreSQL: create it, or check the one there.

Four tables follow the ecosystem's data-adapter plan (``price_feeds``,
``candles``, ``market_snapshots``, ``symbols``); a fifth, ``schema_version``,
records which version of this layout mdactors created, so a later version can
migrate it. :func:`ensure_schema` is idempotent and safe to run from several
processes at once (a transaction-scoped advisory lock serialises them).

Tables that already exist are never altered or dropped, even when they are
ours: when one lacks a column mdactors writes, has it with an incompatible
type, or lacks the unique key an upsert needs, :class:`SchemaError` says so
and nothing is written. The same happens when ``schema_version`` names a
newer version than this code knows.

The schema name reaches SQL only as a quoted identifier
(``psycopg.sql.Identifier``), never by string formatting of user text.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

__all__ = ["SCHEMA_VERSION", "TABLES", "SchemaError", "ensure_schema"]

SCHEMA_VERSION = 1
"""The layout this code writes; bump it with a migration step in :func:`ensure_schema`."""

_LOCK_KEY = 0x6D64_6163_746F_7273 & 0x7FFF_FFFF_FFFF_FFFF  # "mdactors"


class SchemaError(RuntimeError):
    """The schema in the database cannot be written by this version; nothing is written."""


# Each table's columns: (name, type as information_schema reports it, DDL). The reported
# type is what the compatibility check expects of a table that already exists.
_COLUMNS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "price_feeds": (
        ("feed_id", "uuid", "uuid PRIMARY KEY DEFAULT gen_random_uuid()"),
        ("symbol", "character varying", "varchar(32) NOT NULL"),
        ("price", "numeric", "numeric(24, 8) NOT NULL CHECK (price > 0)"),
        ("bid", "numeric", "numeric(24, 8)"),
        ("ask", "numeric", "numeric(24, 8)"),
        ("volume_24h", "numeric", "numeric(24, 8)"),
        ("source", "character varying", "varchar(64) NOT NULL DEFAULT 'simulator'"),
        ("timestamp", "timestamp with time zone", "timestamptz NOT NULL"),
        ("metadata", "jsonb", "jsonb NOT NULL DEFAULT '{}'::jsonb"),
    ),
    "candles": (
        ("candle_id", "uuid", "uuid PRIMARY KEY DEFAULT gen_random_uuid()"),
        ("symbol", "character varying", "varchar(32) NOT NULL"),
        ("interval", "character varying", "varchar(32) NOT NULL"),
        ("open", "numeric", "numeric(24, 8) NOT NULL"),
        ("high", "numeric", "numeric(24, 8) NOT NULL"),
        ("low", "numeric", "numeric(24, 8) NOT NULL"),
        ("close", "numeric", "numeric(24, 8) NOT NULL"),
        ("volume", "numeric", "numeric(24, 8) NOT NULL DEFAULT 0"),
        ("start_time", "timestamp with time zone", "timestamptz NOT NULL"),
        ("end_time", "timestamp with time zone", "timestamptz NOT NULL"),
        ("num_trades", "integer", "integer NOT NULL DEFAULT 0"),
        ("metadata", "jsonb", "jsonb NOT NULL DEFAULT '{}'::jsonb"),
    ),
    "market_snapshots": (
        ("snapshot_id", "uuid", "uuid PRIMARY KEY DEFAULT gen_random_uuid()"),
        ("symbol", "character varying", "varchar(32) NOT NULL"),
        ("last_price", "numeric", "numeric(24, 8) NOT NULL"),
        ("bid", "numeric", "numeric(24, 8)"),
        ("ask", "numeric", "numeric(24, 8)"),
        ("spread", "numeric", "numeric(24, 8)"),
        ("volume_24h", "numeric", "numeric(24, 8)"),
        ("price_change_24h", "numeric", "numeric(24, 8)"),
        ("price_change_percent_24h", "numeric", "numeric(24, 8)"),
        ("timestamp", "timestamp with time zone", "timestamptz NOT NULL"),
        ("metadata", "jsonb", "jsonb NOT NULL DEFAULT '{}'::jsonb"),
    ),
    "symbols": (
        ("symbol_id", "uuid", "uuid PRIMARY KEY DEFAULT gen_random_uuid()"),
        ("symbol", "character varying", "varchar(32) NOT NULL"),
        ("base_currency", "character varying", "varchar(32) NOT NULL"),
        ("quote_currency", "character varying", "varchar(32) NOT NULL"),
        ("display_name", "character varying", "varchar(64)"),
        ("is_active", "boolean", "boolean NOT NULL DEFAULT true"),
        ("min_price_movement", "numeric", "numeric(24, 8)"),
        ("min_order_size", "numeric", "numeric(24, 8)"),
        ("max_order_size", "numeric", "numeric(24, 8)"),
        ("created_at", "timestamp with time zone", "timestamptz NOT NULL DEFAULT now()"),
        ("updated_at", "timestamp with time zone", "timestamptz NOT NULL DEFAULT now()"),
        ("metadata", "jsonb", "jsonb NOT NULL DEFAULT '{}'::jsonb"),
    ),
}

TABLES: dict[str, tuple[str, ...]] = {
    "price_feeds": ("symbol", "timestamp"),
    "candles": ("symbol", "interval", "start_time"),
    "market_snapshots": ("symbol", "timestamp"),
    "symbols": ("symbol",),
}
"""Each table and the unique key its rows are upserted on (a restart writes no duplicates).
Its index also serves the per-symbol time-range reads."""

_CHECKS = {
    "candles": (
        "CHECK (\"interval\" IN ('1m', '5m', '15m', '1h', '4h', '1d'))",
        "CHECK (low <= open AND low <= close AND open <= high AND close <= high)",
    ),
}


def _create_table(schema: str, table: str) -> sql.Composed:
    parts = []
    for column, _, ddl in _COLUMNS[table]:
        parts.append(sql.SQL("{} ").format(sql.Identifier(column)) + sql.SQL(ddl))
    parts.extend(sql.SQL(check) for check in _CHECKS.get(table, ()))
    parts.append(
        sql.SQL("UNIQUE ({})").format(sql.SQL(", ").join(map(sql.Identifier, TABLES[table])))
    )
    return sql.SQL("CREATE TABLE IF NOT EXISTS {}.{} ({})").format(
        sql.Identifier(schema), sql.Identifier(table), sql.SQL(", ").join(parts)
    )


def _existing_columns(cur: psycopg.Cursor, schema: str, table: str) -> dict[str, str] | None:
    cur.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (schema, table),
    )
    rows = cur.fetchall()
    return {name: kind for name, kind in rows} if rows else None


def _has_unique_key(cur: psycopg.Cursor, schema: str, table: str, key: tuple[str, ...]) -> bool:
    """Whether a unique index covers exactly ``key`` (what ``ON CONFLICT (key)`` needs)."""
    cur.execute(
        "SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_index i "
        "JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ANY(i.indkey) "
        "WHERE n.nspname = %s AND t.relname = %s AND i.indisunique AND i.indpred IS NULL "
        "GROUP BY i.indexrelid",
        (schema, table),
    )
    return any(sorted(found) == sorted(key) for (found,) in cur.fetchall())


def _incompatibilities(cur: psycopg.Cursor, schema: str, table: str) -> list[str]:
    """What keeps mdactors from writing an existing ``table`` (empty = compatible)."""
    columns = _existing_columns(cur, schema, table)
    if columns is None:
        return []
    problems = []
    for column, kind, _ in _COLUMNS[table]:
        found = columns.get(column)
        if found is None:
            problems.append(f"{table}.{column} is missing")
        elif found != kind:
            problems.append(f"{table}.{column} is {found}, expected {kind}")
    if not problems and not _has_unique_key(cur, schema, table, TABLES[table]):
        problems.append(f"{table} has no unique key on ({', '.join(TABLES[table])})")
    return problems


def _stored_version(cur: psycopg.Cursor, schema: str) -> int | None:
    if _existing_columns(cur, schema, "schema_version") is None:
        return None
    cur.execute(
        sql.SQL("SELECT max(version) FROM {}.schema_version").format(sql.Identifier(schema))
    )
    row = cur.fetchone()
    return row[0] if row else None


def ensure_schema(conn: psycopg.Connection, schema: str) -> None:
    """Create ``schema`` and its tables if missing, in one transaction; check the rest.

    Raises :class:`SchemaError` (after rolling back) when an existing table
    or the recorded version is incompatible; connection errors propagate.
    """
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        version = _stored_version(cur, schema)
        if version is not None and version > SCHEMA_VERSION:
            raise SchemaError(
                f"schema {schema} is at version {version}, newer than this mdactors "
                f"({SCHEMA_VERSION}): upgrade mdactors or point POSTGRES_SCHEMA elsewhere"
            )
        problems = [p for table in TABLES for p in _incompatibilities(cur, schema, table)]
        if problems:
            raise SchemaError(
                f"schema {schema} has tables mdactors cannot write ({'; '.join(problems)}): "
                "nothing is written; migrate them or point POSTGRES_SCHEMA elsewhere"
            )
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        for table in TABLES:
            cur.execute(_create_table(schema, table))
        cur.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.schema_version (version integer PRIMARY KEY, "
                "applied_at timestamptz NOT NULL DEFAULT now(), description text NOT NULL)"
            ).format(sql.Identifier(schema))
        )
        if version is None:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.schema_version (version, description) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING"
                ).format(sql.Identifier(schema)),
                (SCHEMA_VERSION, "market_data tables of mdactors"),
            )
