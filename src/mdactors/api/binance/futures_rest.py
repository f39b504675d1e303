"""Binance USD-M futures market-data REST API under ``/fapi/v1``, over the perpetuals.

The perpetuals (``BTC/USD-PERP`` → ``BTCUSD``) as Binance's USDⓈ-M futures
serve them: the book, trades and candles are the perpetual's own (the same
machinery as spot, read through :mod:`mdactors.api.binance.rest`'s
helpers); the premium index, funding and open interest are the perpetual
actor's live :class:`~mdactors.domain.funding.FundingState` and
:class:`~mdactors.domain.positioning.OpenInterest`; index klines are the
spot's candles; mark klines are the mark prices
:class:`~mdactors.engine.mark_history.MarkHistory` records from start-up,
and, for buckets before the first whole recorded one, the perpetual's own
trade-price candles (the mark tracks the last price within the basis; a
bucket is one or the other, never a blend).

Errors are Binance's ``{"code", "msg"}`` as on spot.
"""

from __future__ import annotations

import time
from typing import Any

from quart import Blueprint, Response, request

from mdactors.api.binance.codec import (
    agg_trade_json,
    book_ticker_json,
    decimal,
    kline_row,
    places_of,
    top_of_book,
    trade_json,
)
from mdactors.api.binance.futures_codec import (
    agg_trade_row,
    book_ticker_row,
    exchange_info,
    funding_row,
    futures_depth_json,
    futures_ticker_24hr,
    open_interest_json,
    premium_index_json,
    price_kline_row,
    trade_row,
)
from mdactors.api.binance.rest import (
    BinanceError,
    BinanceView,
    KlineRequest,
    Params,
    agg_trades_of,
    binance_view,
    invalid,
    klines_of,
    read_kline_request,
    register_error_handlers,
    respond,
    rows_response,
)
from mdactors.api.binance.symbols import BinanceMarket
from mdactors.domain.klines import KLINE_INTERVALS, Kline, aggregate
from mdactors.engine.derived_actor import PerpetualActor
from mdactors.engine.futures_feed import MarkState

__all__ = ["blueprint", "first_whole_bucket", "splice"]

blueprint = Blueprint("binance_futures", __name__)
register_error_handlers(blueprint)

DEPTH_LIMITS = (5, 10, 20, 50, 100, 500, 1000)
MAX_KLINE_LIMIT = 1500
MAX_TRADE_LIMIT = 1000
MAX_FUNDING_LIMIT = 1000


def _view() -> BinanceView:
    return binance_view(perpetual=True)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _perpetual(view: BinanceView, market: BinanceMarket) -> PerpetualActor:
    actor = view.ctx.market.actor(market.key)
    assert isinstance(actor, PerpetualActor)
    return actor


def _respond(payload: Any, weight: int) -> Response:
    return respond(payload, weight, _view())


# --------------------------------------------------------------------------- general


@blueprint.get("/fapi/v1/ping")
async def ping() -> Response:
    """Connectivity test: ``{}``."""
    Params().done()
    return _respond({}, 1)


@blueprint.get("/fapi/v1/time")
async def server_time() -> Response:
    """``{"serverTime": ms}``."""
    Params().done()
    return _respond({"serverTime": _now_ms()}, 1)


@blueprint.get("/fapi/v1/exchangeInfo")
async def exchange_information() -> Response:
    """Every perpetual: contract type, margin asset, precisions and filters."""
    view = _view()
    Params().done()
    return _respond(exchange_info(view.symbols.markets, _now_ms(), view.created_ms), 1)


# --------------------------------------------------------------------------- market data


@blueprint.get("/fapi/v1/depth")
async def depth() -> Response:
    """The book at the latest tick; ``limit`` one of 5 10 20 50 100 500 1000 (default 500)."""
    view = _view()
    params = Params()
    market = view.market(params.text("symbol"))
    limit = params.limit(500, max(DEPTH_LIMITS))
    params.done()
    if limit not in DEPTH_LIMITS:
        raise invalid("limit")
    tick = view.ctx.market.latest(market.key)
    levels = min(limit, view.ctx.settings.binance_book_depth)
    book = view.ctx.view.book(tick, levels)
    weight = 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20
    return _respond(futures_depth_json(market, book, limit, _now_ms()), weight)


@blueprint.get("/fapi/v1/trades")
async def trades() -> Response:
    """The newest ``limit`` prints (default 500, at most 1000), oldest first."""
    view = _view()
    params = Params()
    market = view.market(params.text("symbol"))
    limit = params.limit(500, MAX_TRADE_LIMIT)
    params.done()
    pp, qp = places_of(market)
    held = (await view.trades(market.key))[-limit:]
    return _respond([trade_row(trade_json(trade, ident, pp, qp)) for ident, trade in held], 5)


@blueprint.get("/fapi/v1/aggTrades")
async def agg_trades() -> Response:
    """Aggregate trades (one print each) by ``fromId`` or time range, oldest first."""
    market, picked = await agg_trades_of(_view())
    pp, qp = places_of(market)
    rows = [agg_trade_row(agg_trade_json(trade, ident, pp, qp)) for ident, trade in picked]
    return _respond(rows, 20)


def _kline_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


@blueprint.get("/fapi/v1/klines")
async def klines() -> Response:
    """The perpetual's candles: all 12 columns, ``1m``..``1M``, ``limit`` ≤ 1500."""
    asked = read_kline_request(_view(), MAX_KLINE_LIMIT)
    rows = await klines_of(asked.market.key, asked.interval, asked.start, asked.end, asked.limit)
    pp, qp = places_of(asked.market)
    return _respond([kline_row(kline, pp, qp) for kline in rows], _kline_weight(asked.limit))


@blueprint.get("/fapi/v1/indexPriceKlines")
async def index_price_klines() -> Response:
    """The index's candles (the spot's; ``pair`` names the perpetual), volume ``"0"``."""
    asked = read_kline_request(_view(), MAX_KLINE_LIMIT, "pair")
    key = asked.market.index_key
    rows = await klines_of(key, asked.interval, asked.start, asked.end, asked.limit)
    pp = places_of(asked.market)[0]
    return _respond([price_kline_row(kline, pp) for kline in rows], _kline_weight(asked.limit))


def first_whole_bucket(interval_name: str, first_ms: int) -> int:
    """The start of the first bucket of ``interval_name`` wholly after ``first_ms``."""
    interval = KLINE_INTERVALS[interval_name]
    start = interval.start(first_ms)
    return start if start == first_ms else interval.end(start)


def splice(
    traded: list[Kline], recorded: list[Kline], from_ms: int, start: int | None, limit: int
) -> list[Kline]:
    """``traded`` buckets before ``from_ms``, then ``recorded`` ones (both oldest first):
    the first ``limit`` from ``start`` when given, else the last ``limit``."""
    merged = [kline for kline in traded if kline.start_ms < from_ms]
    merged += [kline for kline in recorded if kline.start_ms >= from_ms]
    if start is None:
        return merged[-limit:]
    return [kline for kline in merged if kline.start_ms >= start][:limit]


async def mark_klines_of(view: BinanceView, asked: KlineRequest) -> list[Kline]:
    """Mark-price klines: buckets from the first whole recorded mark minute on are the
    recorded marks; earlier buckets the perpetual's own candles (see the module doc)."""
    key = asked.market.key
    traded = await klines_of(key, asked.interval, asked.start, asked.end, asked.limit)
    marks = view.ctx.marks
    first = marks.first_full_ms(key) if marks is not None else None
    if marks is None or first is None:
        return traded
    from_ms = first_whole_bucket(asked.interval, first)
    now_ms = _now_ms()
    end = asked.end if asked.end is not None else now_ms
    interval = KLINE_INTERVALS[asked.interval]
    recorded = aggregate(marks.candles(key, from_ms, end), interval, now_ms)
    return splice(traded, recorded, from_ms, asked.start, asked.limit)


@blueprint.get("/fapi/v1/markPriceKlines")
async def mark_price_klines() -> Response:
    """The mark price's candles, volume ``"0"``, ``limit`` ≤ 1500."""
    view = _view()
    asked = read_kline_request(view, MAX_KLINE_LIMIT)
    rows = await mark_klines_of(view, asked)
    pp = places_of(asked.market)[0]
    return _respond([price_kline_row(kline, pp) for kline in rows], _kline_weight(asked.limit))


# --------------------------------------------------------------------------- funding, OI


def _single_or_all(view: BinanceView) -> tuple[list[BinanceMarket], bool]:
    params = Params()
    one = params.text("symbol")
    params.done()
    if one is not None:
        return [view.market(one)], True
    return view.symbols.markets, False


@blueprint.get("/fapi/v1/premiumIndex")
async def premium_index() -> Response:
    """Mark and index price, the estimated funding rate and the next funding time."""
    view = _view()
    markets, single = _single_or_all(view)
    rows = [premium_index_json(m, MarkState.of(_perpetual(view, m))) for m in markets]
    return rows_response(rows, single, (1, 10), view)


@blueprint.get("/fapi/v1/fundingRate")
async def funding_rate() -> Response:
    """Settled fundings (since start-up), oldest first: ``startTime``/``endTime``
    bound them, ``limit`` (default 100, ≤ 1000) takes the first from ``startTime``,
    else the newest."""
    view = _view()
    params = Params()
    name = params.text("symbol")
    start = params.integer("startTime")
    end = params.integer("endTime")
    limit = params.limit(100, MAX_FUNDING_LIMIT)
    params.done()
    if start is not None and end is not None and start > end:
        raise invalid("startTime")
    markets = [view.market(name)] if name is not None else view.symbols.markets
    low, high = start if start is not None else 0, end if end is not None else 2**62
    rows = sorted(
        (
            (settlement.time_ms, market.name, market, settlement)
            for market in markets
            for settlement in _perpetual(view, market).funding.history
            if low <= settlement.time_ms <= high
        ),
        key=lambda row: row[:2],
    )
    picked = rows[:limit] if start is not None else rows[-limit:]
    return _respond([funding_row(market, s) for _, _, market, s in picked], 1)


@blueprint.get("/fapi/v1/openInterest")
async def open_interest() -> Response:
    """The perpetual's open interest now, in contracts."""
    view = _view()
    params = Params()
    market = view.market(params.text("symbol"))
    params.done()
    actor = _perpetual(view, market)
    body = open_interest_json(market, actor.positions.oi, actor.latest.ts_ms)
    return _respond(body, 1)


# --------------------------------------------------------------------------- tickers


@blueprint.get("/fapi/v1/ticker/24hr")
async def ticker_24hr() -> Response:
    """Rolling 24-hour statistics (``symbol``, or every perpetual)."""
    view = _view()
    markets, single = _single_or_all(view)
    rows = [futures_ticker_24hr(view.ticker_24hr(market)) for market in markets]
    return rows_response(rows, single, (1, 40), view)


@blueprint.get("/fapi/v1/ticker/price")
@blueprint.get("/fapi/v2/ticker/price")
async def ticker_price() -> Response:
    """The latest price and its time (v1 and v2 answer alike)."""
    view = _view()
    markets, single = _single_or_all(view)
    rows = []
    for market in markets:
        tick = view.ctx.market.latest(market.key)
        price = decimal(tick.price, places_of(market)[0])
        rows.append({"symbol": market.name, "price": price, "time": tick.ts_ms})
    return rows_response(rows, single, (1, 2), view)


@blueprint.get("/fapi/v1/ticker/bookTicker")
async def ticker_book() -> Response:
    """Best bid and ask with their quantities, the book's update id and time."""
    view = _view()
    markets, single = _single_or_all(view)
    rows = []
    for market in markets:
        tick = view.ctx.market.latest(market.key)
        spot_row = book_ticker_json(market, top_of_book(view.ctx.view.book(tick, 1)))
        rows.append(book_ticker_row(spot_row, tick.seq, tick.ts_ms))
    return rows_response(rows, single, (2, 5), view)


@blueprint.route("/fapi/<path:unknown>", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"])
async def unknown_path(unknown: str) -> Response:
    """Anything else under ``/fapi``: a 404 in Binance's shape."""
    raise BinanceError(
        -1000, f"Unknown endpoint {request.method} /fapi/{unknown[:100]}.", status=404
    )
