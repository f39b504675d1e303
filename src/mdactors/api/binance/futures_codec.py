"""Binance USD-M futures market-data shapes, sans I/O: REST bodies and WebSocket events.

The futures API is the spot one with contract fields: this module builds on
:mod:`mdactors.api.binance.codec` (decimal strings, levels, trade and kline
rows, the 24-hour ticker) and adds what USD-M has of its own: the contract
in ``exchangeInfo`` (``contractType`` ``PERPETUAL``, ``marginAsset``,
``pricePrecision``/``quantityPrecision``), the premium index and funding,
open interest, mark and index klines, forced orders, and the event times
``E``/``T`` plus ``pu`` (the previous event's ``u``) on depth events.

A :class:`~mdactors.engine.futures_feed.MarkState` is the copy of a
perpetual's :class:`~mdactors.domain.funding.FundingState` one body is made of.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mdactors.api.binance.codec import (
    agg_trade_body,
    book_ticker_json,
    decimal,
    kline_row,
    lot_size_filter,
    min_notional_of,
    mini_ticker_body,
    places_of,
    price_filter,
    ticker_body,
    trade_body,
)
from mdactors.api.binance.symbols import BinanceMarket
from mdactors.api.codec import dumps
from mdactors.domain.book import Level, OrderBook
from mdactors.domain.funding import FundingSettlement
from mdactors.domain.klines import Kline
from mdactors.domain.positioning import ForcedOrder
from mdactors.domain.tick import Trade
from mdactors.engine.futures_feed import MarkState

__all__ = [
    "FUTURES_RATE_LIMITS",
    "agg_trade_event",
    "agg_trade_row",
    "book_ticker_event",
    "book_ticker_row",
    "depth_update_event",
    "exchange_info",
    "force_order_event",
    "funding_row",
    "futures_depth_json",
    "futures_ticker_24hr",
    "mark_price_event",
    "mark_prices_event",
    "mini_ticker_event",
    "open_interest_json",
    "premium_index_json",
    "price_kline_row",
    "ticker_event",
    "trade_event",
    "trade_row",
]

FUTURES_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
]
PERPETUAL_DELIVERY_MS = 4_133_404_800_000
"""Binance's delivery date of a perpetual (2100-12-25)."""
_RATE_PLACES = 8


def _rate(value: float) -> str:
    return decimal(value, _RATE_PLACES)


# --------------------------------------------------------------------------- exchangeInfo


def symbol_info(market: BinanceMarket, onboard_ms: int) -> dict[str, Any]:
    """One USD-M ``exchangeInfo`` symbol: a perpetual margined in its quote asset."""
    spec = market.spec
    price_places, qty_places = places_of(market)
    return {
        "symbol": market.name,
        "pair": market.name,
        "contractType": "PERPETUAL",
        "deliveryDate": PERPETUAL_DELIVERY_MS,
        "onboardDate": onboard_ms,
        "status": "TRADING",
        "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000",
        "baseAsset": market.base,
        "quoteAsset": market.quote,
        "marginAsset": market.quote,
        "pricePrecision": spec.price_decimals,
        "quantityPrecision": spec.qty_decimals,
        "baseAssetPrecision": qty_places,
        "quotePrecision": price_places,
        "underlyingType": "COIN",
        "underlyingSubType": [],
        "settlePlan": 0,
        "triggerProtect": "0.0500",
        "liquidationFee": "0.012500",
        "marketTakeBound": "0.05",
        "filters": [
            price_filter(market),
            lot_size_filter(market),
            lot_size_filter(market, "MARKET_LOT_SIZE"),
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": decimal(min_notional_of(market), 2)},
            {
                "filterType": "PERCENT_PRICE",
                "multiplierUp": "1.0500",
                "multiplierDown": "0.9500",
                "multiplierDecimal": "4",
            },
        ],
        "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def exchange_info(
    markets: Sequence[BinanceMarket], server_time_ms: int, onboard_ms: int
) -> dict[str, Any]:
    """The USD-M ``exchangeInfo`` body: the perpetuals and their margin assets."""
    assets = dict.fromkeys(market.quote for market in markets)
    return {
        "timezone": "UTC",
        "serverTime": server_time_ms,
        "futuresType": "U_MARGINED",
        "rateLimits": FUTURES_RATE_LIMITS,
        "exchangeFilters": [],
        "assets": [
            {"asset": asset, "marginAvailable": True, "autoAssetExchange": "0"} for asset in assets
        ],
        "symbols": [symbol_info(market, onboard_ms) for market in markets],
    }


# --------------------------------------------------------------------------- books


def _levels(levels: Sequence[Level], market: BinanceMarket) -> list[list[str]]:
    pp, qp = places_of(market)
    return [[decimal(price, pp), decimal(qty, qp)] for price, qty in levels]


def futures_depth_json(
    market: BinanceMarket, book: OrderBook, limit: int, now_ms: int
) -> dict[str, Any]:
    """``GET /fapi/v1/depth``: ``lastUpdateId`` = the book's tick, ``E`` now, ``T`` the
    tick's time."""
    return {
        "lastUpdateId": book.seq,
        "E": now_ms,
        "T": book.ts_ns // 1_000_000,
        "bids": _levels(book.bids[:limit], market),
        "asks": _levels(book.asks[:limit], market),
    }


def depth_update_event(
    market: BinanceMarket,
    ids: tuple[int, int, int],
    event_ms: int,
    book_ms: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
) -> bytes:
    """``<symbol>@depth[@100ms|@500ms]`` (and the partial ``@depth<N>``): ``ids`` are
    ``(U, u, pu)``, ``pu`` the previous event's ``u``."""
    first, last, previous = ids
    return dumps(
        {
            "e": "depthUpdate",
            "E": event_ms,
            "T": book_ms,
            "s": market.name,
            "U": first,
            "u": last,
            "pu": previous,
            "b": _levels(bids, market),
            "a": _levels(asks, market),
        }
    )


# --------------------------------------------------------------------------- trades, tickers


def trade_row(spot_row: dict[str, Any]) -> dict[str, Any]:
    """A ``GET /fapi/v1/trades`` row from the spot one (no ``isBestMatch`` on futures)."""
    return {name: value for name, value in spot_row.items() if name != "isBestMatch"}


def agg_trade_row(spot_row: dict[str, Any]) -> dict[str, Any]:
    """A ``GET /fapi/v1/aggTrades`` row (or ``@aggTrade`` body) from the spot one (no ``M``)."""
    return {name: value for name, value in spot_row.items() if name != "M"}


_TICKER_FIELDS = (
    "symbol",
    "priceChange",
    "priceChangePercent",
    "weightedAvgPrice",
    "lastPrice",
    "lastQty",
    "openPrice",
    "highPrice",
    "lowPrice",
    "volume",
    "quoteVolume",
    "openTime",
    "closeTime",
    "firstId",
    "lastId",
    "count",
)


def futures_ticker_24hr(spot_row: dict[str, Any]) -> dict[str, Any]:
    """``GET /fapi/v1/ticker/24hr`` from the spot row (futures has no book or previous close)."""
    return {name: spot_row[name] for name in _TICKER_FIELDS}


def book_ticker_row(spot_row: dict[str, Any], update_id: int, time_ms: int) -> dict[str, Any]:
    """``GET /fapi/v1/ticker/bookTicker`` from the spot row: plus ``lastUpdateId`` and ``time``."""
    return {"lastUpdateId": update_id, **spot_row, "time": time_ms}


# --------------------------------------------------------------------------- klines


def price_kline_row(kline: Kline, price_places: int) -> list[Any]:
    """A ``markPriceKlines``/``indexPriceKlines`` row: OHLC, the count of prices folded,
    and Binance's ``"0"`` in the volume columns (a price index has no volume)."""
    row = kline_row(kline, price_places, 0)
    return [*row[:5], "0", row[6], "0", kline.trades, "0", "0", "0"]


# --------------------------------------------------------------------------- funding


def premium_index_json(market: BinanceMarket, state: MarkState) -> dict[str, Any]:
    """``GET /fapi/v1/premiumIndex``: ``lastFundingRate`` is the running estimate of the
    interval's rate (as on Binance); the estimated settle price of a perpetual is its index."""
    pp = places_of(market)[0]
    return {
        "symbol": market.name,
        "markPrice": decimal(state.mark, pp),
        "indexPrice": decimal(state.index, pp),
        "estimatedSettlePrice": decimal(state.index, pp),
        "lastFundingRate": _rate(state.rate),
        "interestRate": _rate(state.interest_rate),
        "nextFundingTime": state.next_funding_ms,
        "time": state.time_ms,
    }


def funding_row(market: BinanceMarket, settlement: FundingSettlement) -> dict[str, Any]:
    """One row of ``GET /fapi/v1/fundingRate``."""
    return {
        "symbol": market.name,
        "fundingRate": _rate(settlement.rate),
        "fundingTime": settlement.time_ms,
        "markPrice": decimal(settlement.mark, places_of(market)[0]),
    }


def open_interest_json(market: BinanceMarket, open_interest: float, time_ms: int) -> dict[str, Any]:
    """``GET /fapi/v1/openInterest``, in contracts (base units)."""
    return {
        "openInterest": decimal(open_interest, places_of(market)[1]),
        "symbol": market.name,
        "time": time_ms,
    }


# --------------------------------------------------------------------------- stream events


def _mark_price_body(market: BinanceMarket, state: MarkState, event_ms: int) -> dict[str, Any]:
    pp = places_of(market)[0]
    return {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": market.name,
        "p": decimal(state.mark, pp),
        "i": decimal(state.index, pp),
        "P": decimal(state.index, pp),
        "r": _rate(state.rate),
        "T": state.next_funding_ms,
    }


def mark_price_event(market: BinanceMarket, state: MarkState, event_ms: int) -> bytes:
    """``<symbol>@markPrice[@1s]``."""
    return dumps(_mark_price_body(market, state, event_ms))


def mark_prices_event(rows: Sequence[tuple[BinanceMarket, MarkState]], event_ms: int) -> bytes:
    """``!markPrice@arr[@1s]``: every perpetual's mark price update."""
    return dumps([_mark_price_body(market, state, event_ms) for market, state in rows])


def force_order_event(market: BinanceMarket, order: ForcedOrder, event_ms: int) -> bytes:
    """``<symbol>@forceOrder`` / ``!forceOrder@arr``: one liquidation, filled at once (IOC)."""
    pp, qp = places_of(market)
    qty = decimal(order.qty, qp)
    return dumps(
        {
            "e": "forceOrder",
            "E": event_ms,
            "o": {
                "s": market.name,
                "S": order.side,
                "o": "LIMIT",
                "f": "IOC",
                "q": qty,
                "p": decimal(order.price, pp),
                "ap": decimal(order.price, pp),
                "X": "FILLED",
                "l": qty,
                "z": qty,
                "T": order.time_ms,
            },
        }
    )


def _without(body: dict[str, Any], *names: str) -> bytes:
    return dumps({name: value for name, value in body.items() if name not in names})


def trade_event(market: BinanceMarket, trade: Trade, trade_id: int) -> bytes:
    """``<symbol>@trade``: the spot event without ``M`` (futures has no best-match flag)."""
    return _without(trade_body(market, trade, trade_id), "M")


def agg_trade_event(market: BinanceMarket, trade: Trade, trade_id: int) -> bytes:
    """``<symbol>@aggTrade``: the spot event without ``M``."""
    return _without(agg_trade_body(market, trade, trade_id), "M")


def ticker_event(spot_row: dict[str, Any], event_ms: int) -> bytes:
    """``<symbol>@ticker``: the spot event without the book and previous close."""
    return _without(ticker_body(spot_row, event_ms), "x", "b", "B", "a", "A")


def mini_ticker_event(spot_row: dict[str, Any], event_ms: int) -> bytes:
    """``<symbol>@miniTicker`` (as on spot)."""
    return dumps(mini_ticker_body(spot_row, event_ms))


def book_ticker_event(
    market: BinanceMarket, update_id: int, top: tuple[Level, Level], event_ms: int, book_ms: int
) -> bytes:
    """``<symbol>@bookTicker``: best bid and ask, ``u`` the book's update id, ``E``/``T``."""
    row = book_ticker_json(market, top)
    return dumps(
        {
            "e": "bookTicker",
            "u": update_id,
            "E": event_ms,
            "T": book_ms,
            "s": row["symbol"],
            "b": row["bidPrice"],
            "B": row["bidQty"],
            "a": row["askPrice"],
            "A": row["askQty"],
        }
    )
