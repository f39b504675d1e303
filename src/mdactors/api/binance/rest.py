"""Binance spot market-data REST API under ``/api/v3``, over the shared market.

Every answer is a view of the same actors the rest of the service reads: the
price on ``ticker/price`` is the latest tick's, the book on ``depth`` is the
synthetic book at that tick (``lastUpdateId`` = its sequence, lined up with
the ``@depth`` streams). Errors are Binance's ``{"code": ..., "msg": ...}``
with HTTP 400 (404 for unknown paths under ``/api/v3``); this blueprint's
error handlers keep them apart from the service's own error shape. Every
response carries ``x-mbx-used-weight`` headers so clients that read them work.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from quart import Blueprint, Response, current_app, request

from mdactors.api.binance.codec import (
    agg_trade_json,
    book_ticker_json,
    decimal,
    depth_json,
    exchange_info,
    kline_row,
    places_of,
    ticker_24hr_json,
    top_of_book,
    trade_json,
)
from mdactors.api.binance.symbols import BinanceMarket, BinanceSymbols
from mdactors.api.context import ApiContext
from mdactors.api.http.web import context, json_response
from mdactors.domain.klines import KLINE_INTERVALS, Kline, aggregate, kline_of
from mdactors.domain.tick import Trade

__all__ = [
    "BinanceError",
    "BinanceView",
    "KlineRequest",
    "Params",
    "agg_trades_of",
    "binance_view",
    "blueprint",
    "chosen_markets",
    "invalid",
    "klines_of",
    "mandatory",
    "read_kline_request",
    "register_error_handlers",
    "respond",
    "rows_response",
]

blueprint = Blueprint("binance", __name__)

MAX_DEPTH_LIMIT = 5000
MAX_KLINE_LIMIT = 1000
MAX_TRADE_LIMIT = 1000
MAX_SYMBOLS_PARAM = 100
MAX_BASE_CANDLES = 20_000
_MINUTE_MS = 60_000


class BinanceError(Exception):
    """A request Binance would refuse: answered with ``status`` and ``{"code", "msg"}``."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


def mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def invalid(name: str) -> BinanceError:
    return BinanceError(-1130, f"Data sent for parameter '{name}' is not valid.")


_INTEGER = re.compile(r"-?[0-9]+")
_LATEST_MS = 32_503_680_000_000  # 3000-01-01: calendar maths past it is not defined here


def _time_param(params: Params, name: str) -> int | None:
    """An epoch-milliseconds parameter within 1970..3000 (``-1130`` outside)."""
    value = params.integer(name)
    if value is not None and not 0 <= value <= _LATEST_MS:
        raise invalid(name)
    return value


INVALID_SYMBOL = BinanceError(-1121, "Invalid symbol.")


class BinanceView:
    """What one Binance venue's API keeps between requests: the symbol mapping and
    the request weight. ``perpetual`` chooses USD-M futures over spot."""

    def __init__(self, ctx: ApiContext, perpetual: bool = False) -> None:
        self.ctx = ctx
        self.symbols = BinanceSymbols(
            ctx.market.symbols, ctx.settings.binance_symbol_aliases, perpetual=perpetual
        )
        self.created_ms = time.time_ns() // 1_000_000
        self._weight_minute = 0
        self._weight = 0

    def market(self, name: str | None, param: str = "symbol") -> BinanceMarket:
        """The market named ``name`` (sent as ``param``); ``-1102`` when missing,
        ``-1121`` when unknown."""
        if not name:
            raise mandatory(param)
        market = self.symbols.get(name)
        if market is None:
            raise INVALID_SYMBOL
        return market

    def add_weight(self, weight: int) -> int:
        """Count ``weight`` against the current minute; return the minute's total."""
        minute = int(time.time()) // 60
        if minute != self._weight_minute:
            self._weight_minute, self._weight = minute, 0
        self._weight += weight
        return self._weight

    async def trades(self, key: str) -> list[tuple[int, Trade]]:
        """``(trade id, trade)`` of every print held (backfilled ones included), oldest first."""
        return self.ctx.view.trades_since(key)[-MAX_TRADE_LIMIT:]

    def ticker_24hr(self, market: BinanceMarket) -> dict[str, Any]:
        """The 24-hour ticker row of ``market`` at the latest tick."""
        key = market.key
        tick = self.ctx.market.latest(key)
        view = self.ctx.view
        return ticker_24hr_json(market, tick, view.stats_24h(key), top_of_book(view.book(tick, 1)))


def binance_view(perpetual: bool = False) -> BinanceView:
    """The spot (or, with ``perpetual``, USD-M futures) :class:`BinanceView` of the app
    serving the current request."""
    name = "binance-futures" if perpetual else "binance"
    view = current_app.extensions.get(name)
    if view is None:
        view = current_app.extensions[name] = BinanceView(context(), perpetual)
    return view


# --------------------------------------------------------------------------- parameters


class Params:
    """The query of one request, read the Binance way.

    Each getter marks its parameter as read; :meth:`done` then refuses
    parameters the endpoint does not know (``-1104``). A parameter sent twice
    is refused at once (``-1101``).
    """

    def __init__(self) -> None:
        args = request.args
        for name in args:
            if len(args.getlist(name)) > 1:
                raise BinanceError(-1101, f"Duplicate values for parameter '{name[:40]}'.")
        self._args = args
        self._known: set[str] = set()

    def text(self, name: str) -> str | None:
        """The raw value of ``name`` (``None`` when absent or empty)."""
        self._known.add(name)
        value = self._args.get(name)
        return value if value else None

    def integer(self, name: str, default: int | None = None) -> int | None:
        """An integer parameter; ``-1100`` for anything else."""
        value = self.text(name)
        if value is None:
            return default
        if not _INTEGER.fullmatch(value) or len(value) > 20:
            raise BinanceError(
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^[0-9]{1,20}$'.",
            )
        return int(value)

    def limit(self, default: int, maximum: int) -> int:
        """``limit`` within ``1..maximum``; ``-1130`` outside."""
        value = self.integer("limit", default)
        assert value is not None
        if not 1 <= value <= maximum:
            raise invalid("limit")
        return value

    def names(self, view: BinanceView) -> list[BinanceMarket] | None:
        """The markets of ``symbol`` or ``symbols`` (a JSON array); ``None`` if neither is sent."""
        one, many = self.text("symbol"), self.text("symbols")
        if one is not None and many is not None:
            raise BinanceError(-1128, "Combination of optional parameters invalid.")
        if one is not None:
            return [view.market(one)]
        if many is None:
            return None
        try:
            names = json.loads(many)
        except (ValueError, RecursionError):
            names = None
        if (
            not isinstance(names, list)
            or not names
            or len(names) > MAX_SYMBOLS_PARAM
            or not all(isinstance(name, str) for name in names)
        ):
            raise BinanceError(
                -1100,
                "Illegal characters found in parameter 'symbols'; legal value is a JSON "
                f'array of 1..{MAX_SYMBOLS_PARAM} symbol names, e.g. ["BTCUSD","ETHUSD"].',
            )
        return [view.market(name) for name in dict.fromkeys(names)]

    def done(self, *ignored: str) -> None:
        """Refuse parameters the endpoint did not read (``ignored`` ones are accepted)."""
        extra = [name for name in self._args if name not in self._known and name not in ignored]
        if extra:
            sent, read = len(self._args), len(self._args) - len(extra)
            raise BinanceError(
                -1104,
                f"Not all sent parameters were read; read '{read}' parameter(s) "
                f"but was sent '{sent}'.",
            )


# --------------------------------------------------------------------------- responses


def respond(payload: Any, weight: int, view: BinanceView | None = None) -> Response:
    """``payload`` as JSON, its ``weight`` counted against ``view``'s (default: spot's) minute."""
    used = (view or binance_view()).add_weight(weight)
    headers = {"x-mbx-used-weight": str(used), "x-mbx-used-weight-1m": str(used)}
    return json_response(payload, headers=headers)


async def binance_error(error: BinanceError) -> Response:
    """Binance's error body, ``{"code": ..., "msg": ...}``."""
    return json_response({"code": error.code, "msg": error.msg}, error.status)


async def internal_error(error: Exception) -> Response:
    """Anything unexpected: logged, answered as Binance's unknown error."""
    current_app.logger.exception("binance api error", exc_info=error)
    body = {"code": -1000, "msg": "An unknown error occurred while processing the request."}
    return json_response(body, 500)


def register_error_handlers(target: Blueprint) -> None:
    """Answer ``target``'s errors in Binance's shape, apart from the service's own."""
    target.register_error_handler(BinanceError, binance_error)
    target.register_error_handler(Exception, internal_error)


register_error_handlers(blueprint)


# --------------------------------------------------------------------------- general


@blueprint.get("/api/v3/ping")
async def ping() -> Response:
    """Connectivity test: ``{}``."""
    Params().done()
    return respond({}, 1)


@blueprint.get("/api/v3/time")
async def server_time() -> Response:
    """``{"serverTime": ms}``."""
    Params().done()
    return respond({"serverTime": time.time_ns() // 1_000_000}, 1)


@blueprint.get("/api/v3/exchangeInfo")
async def exchange_information() -> Response:
    """Symbols, their status, precisions and filters (all, ``symbol`` or ``symbols``)."""
    view = binance_view()
    params = Params()
    markets = params.names(view)
    params.done("permissions", "showPermissionSets", "symbolStatus")
    body = exchange_info(
        markets if markets is not None else view.symbols.markets, time.time_ns() // 1_000_000
    )
    return respond(body, 20)


# --------------------------------------------------------------------------- market data


@blueprint.get("/api/v3/depth")
async def depth() -> Response:
    """The book at the latest tick: ``limit`` levels (1..5000, at most the book's depth)."""
    view = binance_view()
    params = Params()
    market = view.market(params.text("symbol"))
    limit = params.limit(100, MAX_DEPTH_LIMIT)
    params.done()
    tick = view.ctx.market.latest(market.key)
    levels = min(limit, view.ctx.settings.binance_book_depth)
    book = view.ctx.view.book(tick, levels)
    weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
    return respond(depth_json(market, book, limit), weight)


@blueprint.get("/api/v3/trades")
async def trades() -> Response:
    """The newest ``limit`` prints (default 500, at most 1000), oldest first."""
    view = binance_view()
    params = Params()
    market = view.market(params.text("symbol"))
    limit = params.limit(500, MAX_TRADE_LIMIT)
    params.done()
    pp, qp = places_of(market)
    rows = [trade_json(trade, ident, pp, qp) for ident, trade in await view.trades(market.key)]
    return respond(rows[-limit:], 25)


@blueprint.get("/api/v3/aggTrades")
async def agg_trades() -> Response:
    """Aggregate trades (one print each) by ``fromId`` or time range, oldest first."""
    view = binance_view()
    market, picked = await agg_trades_of(view)
    pp, qp = places_of(market)
    return respond([agg_trade_json(trade, ident, pp, qp) for ident, trade in picked], 4)


async def agg_trades_of(view: BinanceView) -> tuple[BinanceMarket, list[tuple[int, Trade]]]:
    """Read an aggTrades query (``fromId``, or a range of at most an hour, and ``limit``)
    and pick its ``(trade id, trade)`` rows, oldest first."""
    params = Params()
    market = view.market(params.text("symbol"))
    from_id = params.integer("fromId")
    start = params.integer("startTime")
    end = params.integer("endTime")
    limit = params.limit(500, MAX_TRADE_LIMIT)
    params.done()
    if start is not None and end is not None and not 0 <= end - start <= 3_600_000:
        raise invalid("endTime")
    held = await view.trades(market.key)
    if from_id is not None:
        return market, [(ident, trade) for ident, trade in held if ident >= from_id][:limit]
    if start is not None or end is not None:
        low, high = start or 0, end if end is not None else 2**62
        inside = [(i, t) for i, t in held if low <= t.ts_ns // 1_000_000 <= high]
        return market, inside[:limit] if start is not None else inside[-limit:]
    return market, held[-limit:]


def _longest(name: str) -> int:
    """The longest bucket of an interval, in ms (January for ``1M``: 31 days)."""
    interval = KLINE_INTERVALS[name]
    first = interval.start(0)
    return interval.end(first) - first


async def klines_of(
    key: str, interval_name: str, start: int | None, end: int | None, limit: int
) -> list[Kline]:
    """Klines of ``interval_name`` opening within ``[start, end]``: the first ``limit``
    from ``start`` when given, else the last ``limit``."""
    interval = KLINE_INTERVALS[interval_name]
    now_ms = time.time_ns() // 1_000_000
    if start is not None:
        # The window from start holds ``limit`` buckets at most.
        window_end = start + limit * _longest(interval.name) - 1
        end = window_end if end is None else min(end, window_end)
    base_end = None if end is None else interval.end(interval.start(end)) - 1
    per_bucket = _longest(interval.name) // _longest(interval.base)
    base_limit = min(limit * per_bucket, MAX_BASE_CANDLES)
    candles = await context().view.candles(key, interval.base, start, base_end, base_limit)
    if interval.name == interval.base:
        klines = [kline_of(candle, interval) for candle in candles]
    else:
        klines = aggregate(candles, interval, now_ms)
    low = start if start is not None else 0
    high = end if end is not None else 2**62
    klines = [kline for kline in klines if low <= kline.start_ms <= high]
    return klines[:limit] if start is not None else klines[-limit:]


@dataclass(frozen=True, slots=True)
class KlineRequest:
    """A klines query, read and checked: the market, interval, range and limit."""

    market: BinanceMarket
    interval: str
    start: int | None
    end: int | None
    limit: int


def read_kline_request(
    view: BinanceView, max_limit: int, symbol_param: str = "symbol"
) -> KlineRequest:
    """Read a klines query (``symbol_param`` names the market: futures' index klines
    take ``pair``); Binance's errors for a bad interval, range, limit or time zone."""
    params = Params()
    market = view.market(params.text(symbol_param), symbol_param)
    interval = params.text("interval")
    if interval is None:
        raise mandatory("interval")
    if interval not in KLINE_INTERVALS:
        raise BinanceError(-1120, "Invalid interval.")
    start = _time_param(params, "startTime")
    end = _time_param(params, "endTime")
    limit = params.limit(500, max_limit)
    time_zone = params.text("timeZone")
    params.done()
    if time_zone not in (None, "0", "+0", "00:00", "+00:00", "-00:00"):
        raise invalid("timeZone")
    if start is not None and end is not None and start > end:
        raise invalid("startTime")
    return KlineRequest(market, interval, start, end, limit)


@blueprint.get("/api/v3/klines")
async def klines() -> Response:
    """Candles: all 12 columns, every interval the market can produce (``1m``..``1M``)."""
    asked = read_kline_request(binance_view(), MAX_KLINE_LIMIT)
    rows = await klines_of(asked.market.key, asked.interval, asked.start, asked.end, asked.limit)
    pp, qp = places_of(asked.market)
    return respond([kline_row(kline, pp, qp) for kline in rows], 2)


def chosen_markets(params: Params, view: BinanceView) -> tuple[list[BinanceMarket], bool]:
    """The markets of ``symbol``/``symbols`` (every one when neither is sent), and
    whether one ``symbol`` was asked for (answered with an object, not a list)."""
    markets = params.names(view)
    params.done("symbolStatus")
    single = params.text("symbol") is not None
    return (markets if markets is not None else view.symbols.markets), single


def rows_response(
    rows: list[Any], single: bool, weights: tuple[int, int], view: BinanceView | None = None
) -> Response:
    """One row as an object when one ``symbol`` was asked for, else the list; weighed."""
    return respond(rows[0] if single else rows, weights[0] if single else weights[1], view)


@blueprint.get("/api/v3/ticker/24hr")
async def ticker_24hr() -> Response:
    """Rolling 24-hour statistics (``symbol``, ``symbols`` or every market; ``type`` MINI)."""
    view = binance_view()
    params = Params()
    kind = params.text("type") or "FULL"
    chosen, single = chosen_markets(params, view)
    if kind not in ("FULL", "MINI"):
        raise invalid("type")
    rows = [view.ticker_24hr(market) for market in chosen]
    if kind == "MINI":
        mini = ("symbol", "openPrice", "highPrice", "lowPrice", "lastPrice", "volume")
        extra = ("quoteVolume", "openTime", "closeTime", "firstId", "lastId", "count")
        rows = [{name: row[name] for name in (*mini, *extra)} for row in rows]
    return rows_response(rows, single, (2, 80))


@blueprint.get("/api/v3/ticker/price")
async def ticker_price() -> Response:
    """The latest price (the same tick the whole service serves)."""
    view = binance_view()
    chosen, single = chosen_markets(Params(), view)
    latest = view.ctx.market.latest
    rows = [
        {"symbol": m.name, "price": decimal(latest(m.key).price, places_of(m)[0])} for m in chosen
    ]
    return rows_response(rows, single, (2, 4))


@blueprint.get("/api/v3/ticker/bookTicker")
async def ticker_book() -> Response:
    """Best bid and ask with their quantities."""
    view = binance_view()
    chosen, single = chosen_markets(Params(), view)
    latest = view.ctx.market.latest
    book = view.ctx.view.book
    rows = [book_ticker_json(m, top_of_book(book(latest(m.key), 1))) for m in chosen]
    return rows_response(rows, single, (2, 4))


@blueprint.get("/api/v3/avgPrice")
async def average_price() -> Response:
    """Mean of the last five one-minute closes (the open minute included)."""
    view = binance_view()
    params = Params()
    market = view.market(params.text("symbol"))
    params.done()
    closes = view.ctx.view.day_closes(market.key, 5)[-5:]
    tick = view.ctx.market.latest(market.key)
    mean = sum(closes) / len(closes) if closes else tick.price
    body = {"mins": 5, "price": decimal(mean, places_of(market)[0]), "closeTime": tick.ts_ms}
    return respond(body, 2)


@blueprint.route(
    "/api/v3/<path:unknown>", methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]
)
async def unknown_path(unknown: str) -> Response:
    """Anything else under ``/api/v3``: a 404 in Binance's shape."""
    raise BinanceError(
        -1000, f"Unknown endpoint {request.method} /api/v3/{unknown[:100]}.", status=404
    )
