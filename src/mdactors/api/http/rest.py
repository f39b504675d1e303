"""The production price API under ``/api/v1``: current price, history, book, 24h stats,
correlations. Symbols are accepted in any spelling and echoed as sent."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, Field
from quart import Blueprint, Response
from quart_schema import validate_querystring

from mdactors.api.codec import LIVE_SOURCE, perpetual_fields, rfc3339, tick_fields
from mdactors.api.http.errors import invalid_parameter
from mdactors.api.http.web import context, json_response, parse_time_ms
from mdactors.domain.candles import INTERVALS, Candle
from mdactors.domain.stats import correlation_matrix
from mdactors.domain.symbols import spec_for

__all__ = ["blueprint", "check_limit"]

blueprint = Blueprint("prices", __name__)

MAX_BOOK_DEPTH = 500
MAX_CORRELATION_SYMBOLS = 50


class HistoryQuery(BaseModel):
    """Query of ``/prices/{symbol}/history``."""

    start: str | None = Field(None, description="RFC 3339 time or epoch ms (inclusive).")
    end: str | None = Field(None, description="RFC 3339 time or epoch ms (inclusive).")
    interval: str | None = Field(
        None, description="Candle interval (1m 5m 15m 1h 4h 1d) or `tick` for raw ticks."
    )
    limit: int = Field(100, ge=1, description="Most recent items to return.")


class DepthQuery(BaseModel):
    """Query of the order book routes."""

    depth: int = Field(20, ge=1, le=MAX_BOOK_DEPTH, description="Levels per side.")


class CorrelationQuery(BaseModel):
    """Query of ``/correlations``."""

    symbols: str | None = Field(None, description="Comma-separated symbols; default all.")
    window: int = Field(240, ge=10, le=1440, description="Minutes of 1m returns to use.")


def check_limit(limit: int) -> int:
    """``limit`` if within the configured maximum, else a 400 naming it."""
    maximum = context().settings.max_history_limit
    if limit > maximum:
        raise invalid_parameter("limit", f"must be at most {maximum}, got {limit}")
    return limit


def _candle_json(candle: Candle) -> dict[str, object]:
    return {
        "timestamp": rfc3339(candle.start_ms * 1_000_000),
        "timestamp_ms": candle.start_ms,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
        "trades": candle.trades,
        "closed": candle.closed,
    }


@blueprint.get("/api/v1/prices/<path:symbol>/current")
async def current_price(symbol: str) -> Response:
    """The latest tick of a symbol."""
    ctx = context()
    key = ctx.market.resolve(symbol)
    body = tick_fields(ctx.market.latest(key))
    body["symbol"] = symbol
    body["key"] = key
    _add_perpetual(body, key)
    return json_response(body)


def _add_perpetual(body: dict[str, Any], key: str) -> None:
    """A perpetual's answers carry its mark, index, funding and open interest."""
    contract = context().market.latest(key).contract
    if contract is not None:
        body["perpetual"] = perpetual_fields(contract)


@blueprint.get("/api/v1/prices/<path:symbol>/history")
@validate_querystring(HistoryQuery)
async def price_history(symbol: str, query_args: HistoryQuery) -> Response:
    """Candles (default interval from ``CANDLE_INTERVAL``) or raw ticks (``interval=tick``)."""
    ctx = context()
    key = ctx.market.resolve(symbol)
    limit = check_limit(query_args.limit)
    start_ms = parse_time_ms("start", query_args.start)
    end_ms = parse_time_ms("end", query_args.end)
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise invalid_parameter("start", "must not be after end")
    interval = query_args.interval or _default_interval(ctx.settings.candle_interval)
    if interval == "tick":
        ticks = await ctx.history.ticks(
            key,
            (start_ms or 0) * 1_000_000,
            end_ms * 1_000_000 if end_ms is not None else time.time_ns(),
            limit,
        )
        data = [tick_fields(tick) for tick in ticks]
    elif interval in INTERVALS:
        candles = await ctx.view.candles(key, interval, start_ms, end_ms, limit)
        data = [_candle_json(candle) for candle in candles]
    else:
        raise invalid_parameter(
            "interval", f"expected tick or one of {', '.join(INTERVALS)}, got {interval[:20]!r}"
        )
    return json_response(
        {"symbol": symbol, "key": key, "interval": interval, "count": len(data), "data": data}
    )


def _default_interval(seconds: float) -> str:
    for name, length in INTERVALS.items():
        if length == seconds:
            return name
    return "1m"


@blueprint.get("/api/v1/orderbook/<path:symbol>")
@validate_querystring(DepthQuery)
async def order_book(symbol: str, query_args: DepthQuery) -> Response:
    """A synthetic book around the latest quote: never crossed, deeper levels larger."""
    ctx = context()
    key = ctx.market.resolve(symbol)
    tick = ctx.market.latest(key)
    book = ctx.view.book(tick, query_args.depth)
    return json_response(
        {
            "symbol": symbol,
            "key": key,
            "sequence": book.seq,
            "bids": [list(level) for level in book.bids],
            "asks": [list(level) for level in book.asks],
            "mid": tick.price,
            "spread": round(tick.ask - tick.bid, spec_for(key).price_decimals),
            "timestamp": rfc3339(book.ts_ns),
        }
    )


@blueprint.get("/api/v1/stats/<path:symbol>/24h")
async def stats_24h(symbol: str) -> Response:
    """Rolling 24-hour open, high, low, last, volume and change."""
    ctx = context()
    key = ctx.market.resolve(symbol)
    stats = ctx.view.stats_24h(key)
    body = {
        "symbol": symbol,
        "key": key,
        "open": stats.open,
        "high": stats.high,
        "low": stats.low,
        "last": stats.last,
        "volume": stats.volume,
        "change": stats.change,
        "change_percentage": stats.change_pct,
        "window_start": rfc3339(stats.start_ms * 1_000_000),
        "window_end": rfc3339(stats.end_ms * 1_000_000),
        "source": LIVE_SOURCE,
    }
    _add_perpetual(body, key)
    return json_response(body)


class FundingQuery(BaseModel):
    """Query of ``/funding/{symbol}``."""

    start: str | None = Field(None, description="RFC 3339 time or epoch ms (inclusive).")
    end: str | None = Field(None, description="RFC 3339 time or epoch ms (inclusive).")
    limit: int = Field(100, ge=1, le=1000, description="Most recent settlements to return.")


@blueprint.get("/api/v1/funding/<path:symbol>")
@validate_querystring(FundingQuery)
async def funding_history(symbol: str, query_args: FundingQuery) -> Response:
    """A perpetual's settled fundings (newest last) and the interval in progress."""
    ctx = context()
    key = ctx.market.resolve(symbol)
    perpetual = ctx.market.perpetual(key)
    if perpetual is None:
        raise invalid_parameter("symbol", f"{symbol[:40]!r} is not a perpetual (e.g. BTC-USD-PERP)")
    start_ms = parse_time_ms("start", query_args.start) or 0
    end_ms = parse_time_ms("end", query_args.end)
    settled = [
        {
            "funding_time": rfc3339(s.time_ms * 1_000_000),
            "funding_rate": s.rate,
            "mark_price": s.mark,
        }
        for s in perpetual.funding.history
        if start_ms <= s.time_ms and (end_ms is None or s.time_ms <= end_ms)
    ][-query_args.limit :]
    return json_response(
        {
            "symbol": symbol,
            "key": key,
            "count": len(settled),
            "settled": settled,
            "current": perpetual_fields(perpetual.snapshot()),
        }
    )


@blueprint.get("/api/v1/correlations")
@validate_querystring(CorrelationQuery)
async def correlations(query_args: CorrelationQuery) -> Response:
    """Pearson correlation of one-minute log returns between symbols."""
    ctx = context()
    if query_args.symbols:
        names = [name for name in query_args.symbols.split(",") if name.strip()]
        if len(names) > MAX_CORRELATION_SYMBOLS:
            raise invalid_parameter("symbols", f"at most {MAX_CORRELATION_SYMBOLS} symbols")
        keys = list(dict.fromkeys(ctx.market.resolve(name) for name in names))
    else:
        keys = ctx.market.symbols
    closes = {key: ctx.view.day_closes(key, query_args.window) for key in keys}
    return json_response(
        {
            "symbols": keys,
            "window_minutes": query_args.window,
            "matrix": correlation_matrix(closes),
            "timestamp": rfc3339(time.time_ns()),
        }
    )
