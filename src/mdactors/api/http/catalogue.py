"""``GET /api/v1/symbols`` (GetActiveSymbols) and ``GET /api/v1/snapshots/{symbol}``.

The catalogue is PostgreSQL's ``symbols`` table when it answers (symbols of
earlier runs included, ``is_active`` false), else the market's own catalogue
(the rows the service would write, without timestamps); ``source`` says
which. Snapshots live only in PostgreSQL: without it (not configured, or
unreachable) the route answers 503 with the reason.
"""

from __future__ import annotations

import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import validate_querystring

from mdactors.adapters.postgres_rows import SYMBOL_COLUMNS, symbol_row
from mdactors.api.http.errors import ApiError, invalid_parameter
from mdactors.api.http.rest import check_limit
from mdactors.api.http.web import context, json_response, parse_time_ms
from mdactors.domain.symbols import normalize_symbol, spec_for

__all__ = ["blueprint"]

blueprint = Blueprint("catalogue", __name__)


class SymbolsQuery(BaseModel):
    """Query of ``/symbols``."""

    active: bool | None = Field(None, description="Only active (true) or inactive (false).")


class SnapshotsQuery(BaseModel):
    """Query of ``/snapshots/{symbol}``."""

    start: str | None = Field(None, description="RFC 3339 time or epoch ms (inclusive).")
    end: str | None = Field(None, description="RFC 3339 time or epoch ms (inclusive); now.")
    limit: int = Field(100, ge=1, description="Most recent snapshots to return.")


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {name: _json_value(value) for name, value in row.items()}


def _market_row(key: str, active: bool) -> dict[str, Any]:
    """The catalogue row the service writes for ``key`` (its metadata stays in the table)."""
    row = dict(zip(SYMBOL_COLUMNS, symbol_row(spec_for(key), active), strict=True))
    del row["metadata"]
    return {**row, "created_at": None, "updated_at": None}


@blueprint.get("/api/v1/symbols")
@validate_querystring(SymbolsQuery)
async def symbols(query_args: SymbolsQuery) -> Response:
    """The symbol catalogue, by symbol."""
    ctx = context()
    active = query_args.active
    rows = await ctx.postgres.symbols(active) if ctx.postgres is not None else None
    source = "postgres"
    if rows is None:
        source = "market"
        halted = ctx.market.halted()
        rows = [_market_row(key, key not in halted) for key in ctx.market.symbols]
        rows = [row for row in rows if active is None or row["is_active"] is active]
    data = [_json_row(row) for row in rows]
    return json_response({"source": source, "count": len(data), "symbols": data})


@blueprint.get("/api/v1/snapshots/<path:symbol>")
@validate_querystring(SnapshotsQuery)
async def snapshots(symbol: str, query_args: SnapshotsQuery) -> Response:
    """Stored market snapshots of a symbol (any symbol ever stored), oldest first."""
    ctx = context()
    key = normalize_symbol(symbol)
    limit = check_limit(query_args.limit)
    start_ms = parse_time_ms("start", query_args.start) or 0
    end_ms = parse_time_ms("end", query_args.end)
    end_ms = end_ms if end_ms is not None else time.time_ns() // 1_000_000
    if start_ms > end_ms:
        raise invalid_parameter("start", "must not be after end")
    store = ctx.postgres
    if store is None:
        raise ApiError(
            503, "postgres_not_configured", "snapshots are stored in PostgreSQL: set POSTGRES_URL"
        )
    rows = await store.snapshots(key, start_ms, end_ms, limit)
    if rows is None:
        raise ApiError(
            503,
            "postgres_unavailable",
            f"PostgreSQL cannot answer now ({store.reason})",
            reason=store.reason,
        )
    data = [_json_row(row) for row in rows]
    return json_response({"symbol": symbol, "key": key, "count": len(data), "data": data})
