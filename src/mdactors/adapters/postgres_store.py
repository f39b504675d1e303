"""PostgreSQL persistence of the market: sampled price feeds, closed candles, snapshots and
the symbol catalogue, written in batches off the tick path and read back for long history.

Writes: ``record_*`` (event loop, never blocking) queue items in one bounded
:class:`~mdactors.adapters.backlog.Backlog` per table; :meth:`PostgresStore.run`
(a supervised task) connects, makes sure the schema is there
(:func:`~mdactors.adapters.postgres_schema.ensure_schema`), and flushes the
backlogs in a worker thread (psycopg 3's sync API under
``trio.to_thread.run_sync``; its async API is asyncio-only): one transaction
per batch, each table's rows COPYed into a staging table and upserted from it
(``INSERT ... SELECT ... ON CONFLICT`` on the table's unique key),
so a batch written twice (a retry after a lost commit acknowledgement, a warm
restart) leaves no duplicates. Price feeds and snapshots are observations
(``DO NOTHING``); candles and catalogue rows are upserted.

Faults: PostgreSQL down, refusing (bad password, missing privileges) or slow
(``POSTGRES_TIMEOUT`` bounds every connect and statement) → the service keeps
serving from memory and Redis, readiness shows ``postgres: degraded`` with
the reason, retries back off exponentially behind a circuit breaker, and the
backlog is flushed on recovery; rows pushed out of a full backlog are counted
(``market_data_postgres_dropped_total``). A schema whose tables mdactors
cannot write is reported the same way (reason ``incompatible_schema``) and
nothing is written until it is fixed (checked again every breaker timeout).

Reads (history past the memory/Redis retention, snapshots, the catalogue)
go through the same breaker: ``None`` means "PostgreSQL cannot answer now".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from psycopg import sql
from psycopg_pool import ConnectionPool, PoolTimeout

from mdactors.adapters.backlog import Backlog
from mdactors.adapters.breaker import BreakerState, CircuitBreaker
from mdactors.adapters.postgres_rows import (
    CANDLE_COLUMNS,
    PRICE_FEED_COLUMNS,
    SNAPSHOT_COLUMNS,
    SYMBOL_COLUMNS,
    candle_from_row,
    candle_row,
    price_feed_row,
    snapshot_row,
    symbol_row,
    tick_from_row,
)
from mdactors.adapters.postgres_schema import TABLES, SchemaError, ensure_schema
from mdactors.domain.candles import INTERVALS, Candle
from mdactors.domain.symbols import SymbolSpec, spec_for
from mdactors.domain.tick import Tick

__all__ = ["FAILURES", "PostgresStore", "SnapshotInput", "failure_reason", "postgres_pool"]

log = logging.getLogger("mdactors.postgres")

FAILURES = (psycopg.Error, PoolTimeout, OSError)
"""What a failed PostgreSQL call raises (psycopg errors, pool timeouts, socket errors)."""
_REASONS = ("connection", "timeout", "auth", "permission", "incompatible_schema", "query")
_FLUSH_INTERVAL_S = 0.1
_FINAL_FLUSH_S = 2.0
_BACKOFF_BASE_S = 0.05

SnapshotInput = tuple[Tick, float, float, float]
"""What one snapshot is made of: the latest tick, the 24 h volume, change and change %."""

_CONFLICT = {
    "price_feeds": "DO NOTHING",
    "market_snapshots": "DO NOTHING",
    "candles": "DO UPDATE SET open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, "
    "close = EXCLUDED.close, volume = EXCLUDED.volume, end_time = EXCLUDED.end_time, "
    "num_trades = EXCLUDED.num_trades",
    "symbols": "DO UPDATE SET base_currency = EXCLUDED.base_currency, "
    "quote_currency = EXCLUDED.quote_currency, display_name = EXCLUDED.display_name, "
    "is_active = EXCLUDED.is_active, min_price_movement = EXCLUDED.min_price_movement, "
    "min_order_size = EXCLUDED.min_order_size, max_order_size = EXCLUDED.max_order_size, "
    "metadata = EXCLUDED.metadata, updated_at = now()",
}
_COLUMNS_OF = {
    "price_feeds": PRICE_FEED_COLUMNS,
    "candles": CANDLE_COLUMNS,
    "market_snapshots": SNAPSHOT_COLUMNS,
    "symbols": SYMBOL_COLUMNS,
}


def postgres_pool(url: str, size: int, timeout: float) -> ConnectionPool:
    """A pool (not opened yet) whose connects and statements time out after ``timeout``."""
    return ConnectionPool(
        url,
        min_size=1,
        max_size=size,
        open=False,
        timeout=timeout,
        kwargs={
            "connect_timeout": max(1, round(timeout)),
            "options": f"-c statement_timeout={max(1, int(timeout * 1000))}",
            "application_name": "mdactors",
        },
        name="mdactors",
    )


def failure_reason(error: BaseException) -> str:
    """One of :data:`_REASONS` (a metric label and the readiness ``reason``)."""
    if isinstance(error, SchemaError):
        return "incompatible_schema"
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return "permission"
    if isinstance(error, psycopg.errors.InvalidAuthorizationSpecification | PoolTimeout):
        return "auth" if "authentication" in str(error) else "timeout"
    if isinstance(error, psycopg.errors.QueryCanceled):
        return "timeout"
    if isinstance(error, psycopg.OperationalError):
        text = str(error)
        if "authentication" in text or "password" in text:
            return "auth"
        return "timeout" if "timeout" in text else "connection"
    if isinstance(error, psycopg.Error):
        return "query"
    return "connection"


def _stage(table: str) -> sql.Identifier:
    return sql.Identifier(f"mdactors_stage_{table}")


def _staging_statements(schema: str, table: str) -> tuple[sql.Composed, sql.Composed, sql.Composed]:
    """``(create the session's staging table, COPY into it, upsert from it)`` for ``table``.

    COPY moves the rows (formatted by psycopg's C code, so the worker thread
    holds the GIL briefly: the event loop's lag stays low), and one
    ``INSERT ... SELECT ... ON CONFLICT`` applies them; the staging table is
    a temporary table of the connection, emptied at each commit.
    """
    columns = sql.SQL(", ").join(map(sql.Identifier, _COLUMNS_OF[table]))
    target = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
    create = sql.SQL(
        "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA"
    ).format(_stage(table), columns, target)
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(_stage(table), columns)
    upsert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
        target,
        columns,
        columns,
        _stage(table),
        sql.SQL(", ").join(map(sql.Identifier, TABLES[table])),
        sql.SQL(_CONFLICT[table]),
    )
    return create, copy, upsert


class PostgresStore:
    """The four tables of ``schema`` behind ``pool``, written by :meth:`run`.

    ``source`` is the ``price_feeds.source`` written (the market's source,
    ``simulator`` or ``replay``). ``simulated`` are the market's symbols: catalogue
    rows of other symbols are set inactive at each connect. Not thread-safe: call
    it from the event loop.
    """

    def __init__(
        self,
        pool: ConnectionPool,
        breaker: CircuitBreaker,
        *,
        schema: str = "market_data",
        backlog: int = 100_000,
        source: str = "simulator",
        spec: Callable[[str], SymbolSpec] = spec_for,
        simulated: Sequence[str] = (),
    ) -> None:
        self._pool = pool
        self.breaker = breaker
        self.schema = schema
        self.source = source
        self._spec = spec
        self._simulated = list(simulated)
        self._backlogs = {table: Backlog(backlog) for table in TABLES}
        self._statements = {table: _staging_statements(schema, table) for table in TABLES}
        self._work = trio.Event()
        self._ready = False
        """Pool opened and schema checked: batches may be written."""
        self._stored_until: dict[tuple[str, str], int] = {}
        self.up = False
        self.reason = "connection"
        self.detail = ""
        self._known = False
        self.persisted = dict.fromkeys(TABLES, 0)
        self.errors = dict.fromkeys(_REASONS, 0)

    # -- state --------------------------------------------------------------

    def _succeeded(self) -> None:
        self.breaker.record_success()
        if not self.up:
            log.info("postgres up", extra={"event": "postgres_up", "backlog": self.waiting})
        self.up = self._known = True
        self.detail = ""

    def _failed(self, error: BaseException) -> None:
        reason = failure_reason(error)
        self.errors[reason] += 1
        self.breaker.record_failure()
        # libpq messages name host, port and user, never the password.
        detail = str(error).strip().splitlines()[0][:300] if str(error).strip() else reason
        if self.up or not self._known or detail != self.detail:
            level = logging.ERROR if reason == "incompatible_schema" else logging.WARNING
            log.log(
                level,
                "postgres degraded: not persisting",
                extra={"event": "postgres_degraded", "reason": reason, "error": detail},
            )
        self.up = False
        self._known = True
        self.reason = reason
        self.detail = detail

    @property
    def waiting(self) -> int:
        """Rows not written yet, all tables."""
        return sum(backlog.waiting for backlog in self._backlogs.values())

    @property
    def backlog(self) -> dict[str, int]:
        """Rows not written yet (queued or in a write), per table."""
        return {table: backlog.waiting for table, backlog in self._backlogs.items()}

    @property
    def dropped(self) -> dict[str, int]:
        """Rows pushed out of a full backlog (never written), per table."""
        return {table: backlog.dropped for table, backlog in self._backlogs.items()}

    # -- writes (event loop, never blocking) ------------------------------------

    def _push(self, table: str, items: Sequence[Any]) -> None:
        if items:
            self._backlogs[table].push(items)
            self._work.set()

    def record_price_feeds(self, items: Sequence[tuple[Tick, float]]) -> None:
        """Queue sampled ticks, each with the symbol's 24 h volume at that tick."""
        self._push("price_feeds", items)

    def record_candles(self, candles: Sequence[Candle]) -> None:
        """Queue closed candles (any interval); never a forming one."""
        self._push("candles", [candle for candle in candles if candle.closed])

    def record_snapshots(self, items: Sequence[SnapshotInput]) -> None:
        """Queue one snapshot per item."""
        self._push("market_snapshots", items)

    def record_catalogue(self, items: Sequence[tuple[str, bool]]) -> None:
        """Queue catalogue rows: ``(symbol, is_active)``, upserted."""
        self._push("symbols", items)

    # -- the writer task ----------------------------------------------------------

    def _prepare(self) -> None:
        """Check or create the schema, remember the newest candles, open the pool (thread).

        A connection of its own, not the pool's: the pool retries in the background
        and reports only a timeout, where this says why (auth, permission, no server).
        """
        with psycopg.connect(self._pool.conninfo, **self._pool.kwargs) as conn:
            ensure_schema(conn, self.schema)
            if self._simulated:
                # Catalogue rows of symbols this market no longer simulates are inactive.
                conn.execute(
                    sql.SQL(
                        "UPDATE {} SET is_active = false, updated_at = now() "
                        "WHERE is_active AND NOT (symbol = ANY(%s))"
                    ).format(self._table("symbols")),
                    (self._simulated,),
                )
            rows = conn.execute(
                sql.SQL(
                    'SELECT symbol, "interval", max(start_time) FROM {}.candles '
                    'GROUP BY symbol, "interval"'
                ).format(sql.Identifier(self.schema))
            ).fetchall()
        self._stored_until = {
            (symbol, interval): int(start.timestamp() * 1000) for symbol, interval, start in rows
        }
        self._pool.open(wait=False)

    def _rows(self, table: str, items: list[Any]) -> list[tuple]:
        spec = self._spec
        if table == "price_feeds":
            return [price_feed_row(t, spec(t.symbol), v, self.source) for t, v in items]
        if table == "candles":
            stored = self._stored_until
            # Candles made again at a warm start (the backfill) never overwrite stored ones.
            fresh = {
                (c.symbol, c.interval, c.start_ms): c
                for c in items
                if c.start_ms > stored.get((c.symbol, c.interval), -1)
            }
            return [candle_row(c, spec(c.symbol)) for c in fresh.values()]
        if table == "market_snapshots":
            return [snapshot_row(t, spec(t.symbol), v, c, p) for t, v, c, p in items]
        return [symbol_row(spec(key), active) for key, active in dict(items).items()]

    def _write(self, batches: dict[str, list[Any]]) -> dict[str, int]:
        """One transaction for one batch of every table (runs in a worker thread);
        returns the rows sent per table."""
        rows = {table: self._rows(table, items) for table, items in batches.items() if items}
        if not any(rows.values()):
            return {}
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            for table, table_rows in rows.items():
                if not table_rows:
                    continue
                create, copy, upsert = self._statements[table]
                cur.execute(create)
                with cur.copy(copy) as stream:
                    for row in table_rows:
                        stream.write_row(row)
                cur.execute(upsert)
        return {table: len(table_rows) for table, table_rows in rows.items()}

    async def flush(self, limit: int = 5_000) -> bool:
        """Write one batch (up to ``limit`` rows per table); ``False`` if PostgreSQL failed.

        A failed batch goes back to the front of its backlogs.
        """
        batches = {table: backlog.take(limit) for table, backlog in self._backlogs.items()}
        try:
            written = await trio.to_thread.run_sync(self._write, batches)
        except BaseException as error:
            for table, batch in batches.items():
                self._backlogs[table].give_back(batch)
            if not isinstance(error, FAILURES):
                raise
            self._failed(error)
            if self.reason in ("connection", "timeout", "auth"):
                self._ready = False  # reconnect through _prepare: it names the cause
            return False
        for table, batch in batches.items():
            self._backlogs[table].written(batch)
            self.persisted[table] += written.get(table, 0)
        for candle in batches["candles"]:
            slot = (candle.symbol, candle.interval)
            self._stored_until[slot] = max(self._stored_until.get(slot, -1), candle.start_ms)
        self._succeeded()
        return True

    def _retry_delay(self) -> float:
        if self.reason == "incompatible_schema":
            return self.breaker.reset_timeout
        failures = max(1, self.breaker.consecutive_failures)
        backoff = min(_BACKOFF_BASE_S * 2 ** min(failures - 1, 30), self.breaker.reset_timeout)
        return max(backoff, self.breaker.retry_in())

    async def _connect(self) -> bool:
        try:
            await trio.to_thread.run_sync(self._prepare)
        except (*FAILURES, SchemaError) as error:
            self._failed(error)
            return False
        self._ready = True
        self._succeeded()
        return True

    def _pending(self) -> bool:
        return any(self._backlogs.values())

    async def _next_batch_ready(self) -> None:
        while not self._pending():
            self._work = trio.Event()
            await self._work.wait()
        await trio.sleep(_FLUSH_INTERVAL_S)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, then flush the backlogs until cancelled; then a last flush (2 s at most)."""
        task_status.started()
        try:
            while True:
                if not self._ready and not await self._connect():
                    await trio.sleep(self._retry_delay())
                    continue
                await self._next_batch_ready()
                if not await self.flush():
                    await trio.sleep(self._retry_delay())
        finally:
            with trio.move_on_after(_FINAL_FLUSH_S, shield=True):
                while self._ready and self.up and self._pending() and await self.flush():
                    pass
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._pool.close, 1.0)

    # -- reads --------------------------------------------------------------------

    def readable(self) -> bool:
        """Whether reads are tried now (schema ready, PostgreSQL up, breaker closed)."""
        return self._ready and self.up and self.breaker.state is BreakerState.CLOSED

    async def _read(self, query: Callable[..., Any], *args: Any) -> Any:
        if not self.readable():
            return None
        try:
            return await trio.to_thread.run_sync(query, *args)
        except FAILURES as error:
            self._failed(error)
            return None

    def _fetch(self, query: sql.Composable, params: Sequence[Any]) -> list[tuple]:
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchall()

    def _table(self, name: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(name))

    async def candles(
        self, key: str, interval: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Candle] | None:
        """The newest ``limit`` stored candles starting in ``[start_ms, end_ms]``, oldest first."""
        if interval not in INTERVALS:
            raise ValueError(f"unknown interval {interval!r}")
        query = sql.SQL(
            "SELECT start_time, open, high, low, close, volume, num_trades FROM {} "
            'WHERE symbol = %s AND "interval" = %s AND start_time >= to_timestamp(%s / 1000.0) '
            "AND start_time <= to_timestamp(%s / 1000.0) ORDER BY start_time DESC LIMIT %s"
        ).format(self._table("candles"))
        rows = await self._read(self._fetch, query, (key, interval, start_ms, end_ms, limit))
        if rows is None:
            return None
        return [candle_from_row(key, interval, r[0], r[1:6], r[6]) for r in reversed(rows)]

    async def ticks(self, key: str, start_ns: int, end_ns: int, limit: int) -> list[Tick] | None:
        """The newest ``limit`` stored (sampled) ticks in ``[start_ns, end_ns]``, oldest first."""
        query = sql.SQL(
            "SELECT price, bid, ask, timestamp, metadata FROM {} WHERE symbol = %s "
            "AND timestamp >= to_timestamp(%s / 1e6) AND timestamp <= to_timestamp(%s / 1e6) "
            "ORDER BY timestamp DESC LIMIT %s"
        ).format(self._table("price_feeds"))
        params = (key, start_ns // 1_000, end_ns // 1_000, limit)
        rows = await self._read(self._fetch, query, params)
        if rows is None:
            return None
        ticks = [tick_from_row(key, *row) for row in reversed(rows)]
        return [tick for tick in ticks if start_ns <= tick.ts_ns <= end_ns]

    async def snapshots(
        self, key: str, start_ms: int, end_ms: int, limit: int
    ) -> list[dict[str, Any]] | None:
        """Stored snapshots of ``key`` in ``[start_ms, end_ms]``, newest ``limit``, oldest first."""
        query = sql.SQL(
            "SELECT symbol, last_price, bid, ask, spread, volume_24h, price_change_24h, "
            "price_change_percent_24h, timestamp FROM {} WHERE symbol = %s "
            "AND timestamp >= to_timestamp(%s / 1000.0) AND timestamp <= to_timestamp(%s / 1000.0) "
            "ORDER BY timestamp DESC LIMIT %s"
        ).format(self._table("market_snapshots"))
        rows = await self._read(self._fetch, query, (key, start_ms, end_ms, limit))
        if rows is None:
            return None
        names = ("symbol", "last_price", "bid", "ask", "spread", "volume_24h")
        names += ("price_change_24h", "price_change_percent_24h", "timestamp")
        return [dict(zip(names, row, strict=True)) for row in reversed(rows)]

    async def symbols(self, active: bool | None) -> list[dict[str, Any]] | None:
        """The catalogue (only active or inactive rows when ``active`` is set), by symbol."""
        query = sql.SQL(
            "SELECT symbol, base_currency, quote_currency, display_name, is_active, "
            "min_price_movement, min_order_size, max_order_size, created_at, updated_at "
            "FROM {} WHERE (%s::boolean IS NULL OR is_active = %s) ORDER BY symbol"
        ).format(self._table("symbols"))
        rows = await self._read(self._fetch, query, (active, active))
        if rows is None:
            return None
        names = ("symbol", "base_currency", "quote_currency", "display_name", "is_active")
        names += ("min_price_movement", "min_order_size", "max_order_size")
        names += ("created_at", "updated_at")
        return [dict(zip(names, row, strict=True)) for row in rows]

    # -- health and metrics -------------------------------------------------------

    def describe(self) -> dict[str, object]:
        """Readiness details: ``status`` is ``ok`` or ``degraded`` (with ``reason``)."""
        details: dict[str, object] = {
            "status": "ok" if self.up else "degraded",
            "schema": self.schema,
            "breaker": self.breaker.state.value,
            "backlog": self.waiting,
            "dropped": sum(self.dropped.values()),
        }
        if not self.up:
            details["reason"] = self.reason
            if self.detail:
                details["detail"] = self.detail
        return details

    def collector(self) -> Collector:
        """Prometheus metrics of this store, read at scrape time."""
        return _PostgresCollector(self)


def _by_table(family: GaugeMetricFamily | CounterMetricFamily, values: dict[str, int]) -> Metric:
    for table, value in values.items():
        family.add_metric([table], value)
    return family


class _PostgresCollector(Collector):
    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        store = self._store
        yield GaugeMetricFamily(
            "market_data_postgres_up",
            "1 while PostgreSQL accepts writes, 0 while degraded (rows wait in the backlog).",
            value=int(store.up),
        )
        yield _by_table(
            GaugeMetricFamily(
                "market_data_postgres_backlog",
                "Rows waiting to be written to PostgreSQL.",
                labels=["table"],
            ),
            store.backlog,
        )
        yield _by_table(
            CounterMetricFamily(
                "market_data_postgres_dropped",
                "Rows pushed out of the full PostgreSQL backlog (never persisted).",
                labels=["table"],
            ),
            store.dropped,
        )
        yield _by_table(
            CounterMetricFamily(
                "market_data_postgres_persisted",
                "Rows written to PostgreSQL (inserted or upserted).",
                labels=["table"],
            ),
            dict(store.persisted),
        )
        errors = CounterMetricFamily(
            "market_data_postgres_errors", "Failed PostgreSQL calls by reason.", labels=["reason"]
        )
        for reason in _REASONS:
            errors.add_metric([reason], store.errors[reason])
        yield errors
