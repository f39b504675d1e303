"""The market_data schema in the real PostgreSQL: created idempotently, foreign tables respected."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import psycopg
import pytest
from psycopg import sql

from mdactors.adapters.postgres_schema import SCHEMA_VERSION, TABLES, SchemaError, ensure_schema
from tests.conftest import running_service, wait_for


@pytest.fixture
def conn(postgres_database: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(postgres_database, autocommit=True) as connection:
        yield connection


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    return conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
        (schema, table),
    ).fetchall()


def test_schema_is_created_once_and_a_second_run_changes_nothing(
    conn: psycopg.Connection, postgres_schema: str
) -> None:
    ensure_schema(conn, postgres_schema)
    first = {table: _columns(conn, postgres_schema, table) for table in TABLES}
    ensure_schema(conn, postgres_schema)
    assert {table: _columns(conn, postgres_schema, table) for table in TABLES} == first
    assert all(first.values())
    versions = conn.execute(
        sql.SQL("SELECT version FROM {}.schema_version").format(sql.Identifier(postgres_schema))
    ).fetchall()
    assert versions == [(SCHEMA_VERSION,)]
    names = [name for name, _ in first["candles"]]
    assert {"candle_id", "interval", "start_time", "end_time", "num_trades"} <= set(names)


def test_candle_checks_refuse_a_low_above_the_open(
    conn: psycopg.Connection, postgres_schema: str
) -> None:
    ensure_schema(conn, postgres_schema)
    insert = sql.SQL(
        "INSERT INTO {}.candles (symbol, interval, open, high, low, close, start_time, end_time) "
        "VALUES ('BTC/USD', '1m', 10, 12, 11, 11, now(), now())"
    ).format(sql.Identifier(postgres_schema))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(insert)


def test_a_foreign_table_with_missing_columns_is_refused_and_left_untouched(
    conn: psycopg.Connection, postgres_schema: str
) -> None:
    schema = sql.Identifier(postgres_schema)
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    conn.execute(
        sql.SQL("CREATE TABLE {}.candles (symbol text, open float8, start_time text)").format(
            schema
        )
    )
    before = _columns(conn, postgres_schema, "candles")
    with pytest.raises(SchemaError) as caught:
        ensure_schema(conn, postgres_schema)
    message = str(caught.value)
    assert "candles.num_trades is missing" in message
    assert "candles.open is double precision, expected numeric" in message
    assert "POSTGRES_SCHEMA" in message
    assert _columns(conn, postgres_schema, "candles") == before
    assert _columns(conn, postgres_schema, "price_feeds") == [], "nothing created on refusal"


def test_a_schema_of_a_newer_version_is_refused(
    conn: psycopg.Connection, postgres_schema: str
) -> None:
    ensure_schema(conn, postgres_schema)
    conn.execute(
        sql.SQL("INSERT INTO {}.schema_version (version, description) VALUES (%s, 'later')").format(
            sql.Identifier(postgres_schema)
        ),
        (SCHEMA_VERSION + 1,),
    )
    with pytest.raises(SchemaError, match="newer than this mdactors"):
        ensure_schema(conn, postgres_schema)


async def test_service_over_an_incompatible_schema_serves_and_reports_why(
    postgres_database: str, postgres_schema: str
) -> None:
    with psycopg.connect(postgres_database, autocommit=True) as setup:
        schema = sql.Identifier(postgres_schema)
        setup.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
        setup.execute(sql.SQL("CREATE TABLE {}.symbols (symbol text)").format(schema))
    env = {"POSTGRES_URL": postgres_database, "POSTGRES_SCHEMA": postgres_schema}
    async with running_service(env) as service:
        store = service.context.postgres
        assert store is not None
        await wait_for(lambda: store.reason == "incompatible_schema", 20)
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            ready = await http.get("/api/v1/ready")
            price = await http.get("/api/v1/prices/BTC-USD/current")
        check = ready.json()["checks"]["postgres"]
        assert (ready.status_code, check["status"]) == (200, "degraded")
        assert check["reason"] == "incompatible_schema"
        assert "symbols.symbol_id is missing" in check["detail"]
        assert price.status_code == 200
        assert store.persisted["candles"] == 0


async def test_a_user_without_privileges_is_reported_as_permission(
    postgres_database: str, postgres_schema: str
) -> None:
    user = f"nopriv_{postgres_schema[-6:]}"
    with psycopg.connect(postgres_database, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
        try:
            url = postgres_database.replace("postgres@", f"{user}@")
            env = {"POSTGRES_URL": url, "POSTGRES_SCHEMA": postgres_schema}
            async with running_service(env) as service:
                store = service.context.postgres
                assert store is not None
                await wait_for(lambda: store.reason == "permission", 20)
                assert "permission denied" in store.describe()["detail"]
                assert store.errors["permission"] >= 1
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))
