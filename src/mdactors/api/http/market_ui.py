"""The ecosystem web UI's API: assets (``BTC``) quoted in USD, timestamps in epoch ms,
and the Server-Sent Events price stream."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import trio
from pydantic import BaseModel, Field
from quart import Blueprint, Response, request
from quart_schema import validate_querystring

from mdactors.api.codec import dumps
from mdactors.api.context import ApiContext
from mdactors.api.http.errors import HTTP_ERRORS, ApiError, invalid_parameter
from mdactors.api.http.rest import DepthQuery, check_limit
from mdactors.api.http.sse import sse_comment, sse_event, sse_retry
from mdactors.api.http.web import context, json_response
from mdactors.api.http.write_guard import guard_writes
from mdactors.domain.candles import INTERVALS
from mdactors.domain.symbols import DEFAULT_QUOTE, spec_for
from mdactors.domain.tick import Tick
from mdactors.domain.trade_backfill import TRADE_ID_BASE
from mdactors.engine.outlet import Outlet, SlowConsumer
from mdactors.engine.subscription import StreamClosed, Subscription, TooManyStreams

__all__ = ["blueprint"]

blueprint = Blueprint("market_ui", __name__)

CLIENT_TYPE = "sse"
"""The ``client_type`` of SSE streams in the stream, drop and latency metrics."""
SSE_SNAPSHOT_EVERY_S = 10.0
SSE_KEEPALIVE_S = 15.0
SSE_STATUS_EVERY_S = 1.0
MAX_TRADES = 1000


class UiHistoryQuery(BaseModel):
    """Query of ``/market/history/{asset}``."""

    interval: str = Field("1h", description="Candle interval: 1m 5m 15m 1h 4h 1d.")
    limit: int = Field(24, ge=1, description="Most recent candles to return.")


class TradesQuery(BaseModel):
    """Query of ``/market/trades/{asset}``."""

    limit: int = Field(20, ge=1, le=MAX_TRADES, description="Most recent trades.")


class StreamQuery(BaseModel):
    """Query of ``/stream/prices``."""

    assets: str | None = Field(None, description="Comma-separated assets; default all.")


def _usd_assets() -> dict[str, str]:
    """Asset → symbol key for every simulated symbol quoted in USD."""
    return {
        key.split("/")[0]: key
        for key in context().market.symbols
        if key.endswith(f"/{DEFAULT_QUOTE}")
    }


def _asset_key(asset: str) -> str:
    return context().market.resolve(asset)


def _asset_quote(ctx: ApiContext, key: str, tick: Tick) -> dict[str, Any]:
    stats = ctx.view.stats_24h(key)
    return {
        "price": tick.price,
        "timestamp": tick.ts_ms,
        "change_24h": round(stats.change, spec_for(key).price_decimals),
        "change_percent_24h": round(stats.change_pct, 4),
    }


@blueprint.get("/api/v1/market/prices")
async def prices() -> Response:
    """Every USD-quoted asset: price, timestamp (ms) and 24h change."""
    ctx = context()
    return json_response(
        {
            asset: _asset_quote(ctx, key, ctx.market.latest(key))
            for asset, key in _usd_assets().items()
        }
    )


@blueprint.get("/api/v1/market/price/<asset>")
async def price(asset: str) -> Response:
    """One asset's price, timestamp (ms) and 24h change."""
    key = _asset_key(asset)
    ctx = context()
    return json_response(_asset_quote(ctx, key, ctx.market.latest(key)))


@blueprint.get("/api/v1/market/history/<asset>")
@validate_querystring(UiHistoryQuery)
async def history(asset: str, query_args: UiHistoryQuery) -> Response:
    """OHLCV candles, oldest first, the last one still forming."""
    key = _asset_key(asset)
    if query_args.interval not in INTERVALS:
        raise invalid_parameter(
            "interval", f"expected one of {', '.join(INTERVALS)}, got {query_args.interval[:20]!r}"
        )
    limit = check_limit(query_args.limit)
    candles = await context().view.candles(key, query_args.interval, None, None, limit)
    return json_response(
        {
            "data": [
                {
                    "timestamp": c.start_ms,
                    "open": c.open,
                    "high": c.high,
                    "low": c.low,
                    "close": c.close,
                    "volume": c.volume,
                }
                for c in candles
            ]
        }
    )


@blueprint.get("/api/v1/market/orderbook/<asset>")
@validate_querystring(DepthQuery)
async def orderbook(asset: str, query_args: DepthQuery) -> Response:
    """Bids and asks as ``[price, quantity]`` pairs, best first."""
    key = _asset_key(asset)
    ctx = context()
    tick = ctx.market.latest(key)
    book = ctx.view.book(tick, query_args.depth)
    return json_response(
        {
            "bids": [list(level) for level in book.bids],
            "asks": [list(level) for level in book.asks],
            "timestamp": tick.ts_ms,
        }
    )


@blueprint.get("/api/v1/market/trades/<asset>")
@validate_querystring(TradesQuery)
async def trades(asset: str, query_args: TradesQuery) -> Response:
    """Recent trades, newest first."""
    key = _asset_key(asset)
    tape = context().view.recent_trades(key, query_args.limit)
    return json_response(
        {
            "trades": [
                {
                    "id": str(TRADE_ID_BASE + trade.id),
                    "price": trade.price,
                    "quantity": trade.quantity,
                    "side": trade.side,
                    "timestamp": trade.ts_ns // 1_000_000,
                }
                for trade in tape
            ]
        }
    )


def _price_event(ctx: ApiContext, asset: str, key: str, tick: Tick) -> bytes:
    """The ``price`` event of one tick, encoded once and shared by every SSE client."""
    cached = tick.wire.get("sse")
    if cached is None:
        quote = _asset_quote(ctx, key, tick)
        payload = {"asset": asset, "price": tick.price, "timestamp": tick.ts_ms, "data": quote}
        cached = tick.wire["sse"] = sse_event("price", dumps(payload), f"{asset}-{tick.seq}")
    return cached


def _status_events(
    ctx: ApiContext, asset_of: dict[str, str], seen: dict[str, tuple[str, str]]
) -> list[bytes]:
    """A ``status`` event per asset whose feed status changed since ``seen`` (updated)."""
    now_ns = time.time_ns()
    events = []
    for key, asset in asset_of.items():
        status = ctx.market.actor(key).feed_status(now_ns)
        if seen.get(key, ("live", "")) != status:
            seen[key] = status
            payload = {"asset": asset, "status": status[0], "reason": status[1]}
            events.append(sse_event("status", dumps(payload)))
    return events


def _prices_event(ctx: ApiContext, assets: dict[str, str]) -> bytes:
    market = ctx.market
    payload = {asset: _asset_quote(ctx, key, market.latest(key)) for asset, key in assets.items()}
    return sse_event("prices", dumps(payload))


@blueprint.get("/api/v1/stream/prices")
@validate_querystring(StreamQuery)
async def stream_prices(query_args: StreamQuery) -> Response:
    """Server-Sent Events: ``prices`` (all assets) at start and every 10 s,
    ``price`` per tick (newest per asset when the client is behind), and
    ``status`` when an asset's feed turns ``halted``, ``stale`` or ``outage``
    and back to ``live``."""
    ctx = context()
    if query_args.assets:
        names = [name.strip() for name in query_args.assets.split(",") if name.strip()]
        if not names or len(names) > 100:
            raise invalid_parameter("assets", "give between 1 and 100 assets")
        assets = {}
        for name in names:
            key = ctx.market.resolve(name)
            assets[key.split("/")[0] if key.endswith(f"/{DEFAULT_QUOTE}") else key] = key
    else:
        assets = _usd_assets()
    if ctx.streams.active >= ctx.streams.max_streams:
        raise ApiError(503, "too_many_streams", "stream limit reached; retry later")
    if ctx.lifecycle.drain_requested.is_set():
        raise ApiError(503, "draining", "server is shutting down")
    asset_of = {key: asset for asset, key in assets.items()}
    retry_ms = int(ctx.settings.sse_retry * 1000)
    slow_after = ctx.settings.slow_consumer_timeout
    latency = ctx.metrics.publication_latency.labels(CLIENT_TYPE)
    guard_writes(request.scope)

    async def events() -> AsyncIterator[bytes]:
        # The stream is registered inside the generator, so a client that
        # leaves before the first byte never holds a slot.
        subscription = Subscription({key: ctx.market.actor(key).topic for key in assets.values()})
        try:
            with ctx.streams.open(CLIENT_TYPE, subscription):
                outlet = Outlet(ctx.streams, latency, CLIENT_TYPE, subscription, slow_after)
                delivering: list[Tick] = []
                seen: dict[str, tuple[str, str]] = {}
                status = _status_events(ctx, asset_of, seen)
                chunk = b"".join([sse_retry(retry_ms), _prices_event(ctx, assets), *status])
                snapshot_due = time.monotonic() + SSE_SNAPSHOT_EVERY_S
                keepalive_due = time.monotonic() + SSE_KEEPALIVE_S
                while True:
                    if chunk:
                        started = trio.current_time()
                        yield chunk
                        # One that stopped reading got its connection reset by
                        # the write guard, ending the send.
                        try:
                            outlet.delivered(delivering, started)
                        except SlowConsumer:
                            return
                        chunk = b""
                        delivering = []
                    with trio.move_on_after(SSE_STATUS_EVERY_S) as idle:
                        await subscription.wait()
                    chunks = _status_events(ctx, asset_of, seen)
                    if idle.cancelled_caught:
                        if chunks or time.monotonic() >= keepalive_due:
                            keepalive_due = time.monotonic() + SSE_KEEPALIVE_S
                            chunk = b"".join(chunks) if chunks else sse_comment("keep-alive")
                        continue
                    for key, tick in outlet.take_newest():
                        chunks.append(_price_event(ctx, asset_of[key], key, tick))
                        delivering.append(tick)
                    if time.monotonic() >= snapshot_due:
                        chunks.append(_prices_event(ctx, assets))
                        snapshot_due = time.monotonic() + SSE_SNAPSHOT_EVERY_S
                    keepalive_due = time.monotonic() + SSE_KEEPALIVE_S
                    chunk = b"".join(chunks)
        except (TooManyStreams, StreamClosed) as error:
            said = HTTP_ERRORS(error)
            if isinstance(error, StreamClosed):
                yield sse_event("end", dumps({"reason": said.message}))
            else:
                yield sse_event("error", dumps({"error": said.error, "message": said.message}))

    response = Response(
        events(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
    response.timeout = None
    return response
