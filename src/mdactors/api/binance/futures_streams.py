"""The Binance USD-M futures streams' encodings: which event a feed item makes for a stream.

Futures sessions are :class:`~mdactors.api.binance.streams.BinanceSession`\\ s
on ``/fws`` and ``/fstream`` (:data:`~mdactors.api.binance.protocol.FUTURES`);
they read the perpetuals' :class:`~mdactors.engine.binance_feed.SymbolFeed`
Topics (ticks, depth, klines: the same machinery as spot) and the
:class:`~mdactors.engine.futures_feed.FuturesFeed` Topic (mark prices and
liquidations, once a second), and render them with :class:`FuturesEncoder`.
A caught-up session of ``<s>@depth@100ms`` and ``<s>@markPrice@1s`` follows
both Topics and is on the fast path of both: each Topic's fan-out writes its
own events, encoded once per event and rendering (a futures session never
shares a rendering with a spot one: same stream names, other events).

Depth events carry ``pu``, the previous event's ``u``: each diff takes the
book of update ``pu`` (and of any update up to ``u``) to the book of ``u``,
and ``U = pu + 1``. So the REST snapshot's ``lastUpdateId`` lines up by
Binance's futures rules: the first event to apply has ``U ≤ lastUpdateId ≤
u`` (or ``pu = lastUpdateId``), and each next one has ``pu`` = the last
applied ``u``; a session that lost events sees ``pu`` differ (resync).
"""

from __future__ import annotations

from typing import Any

from mdactors.api.binance.codec import kline_event, tick_print, ticker_24hr_json, top_of_book
from mdactors.api.binance.futures_codec import (
    agg_trade_event,
    book_ticker_event,
    depth_update_event,
    force_order_event,
    mark_price_event,
    mark_prices_event,
    mini_ticker_event,
    ticker_event,
    trade_event,
)
from mdactors.api.binance.protocol import StreamSpec
from mdactors.api.binance.symbols import BinanceMarket, BinanceSymbols
from mdactors.domain.tick import Tick
from mdactors.engine.binance_feed import DepthUpdate, KlineUpdate
from mdactors.engine.futures_feed import ForcedOrderUpdate, MarkSnapshot
from mdactors.engine.market_view import MarketView

__all__ = ["FuturesEncoder"]


class FuturesEncoder:
    """Renders feed items as USD-M events for the futures ``symbols``; ``view`` answers
    books and 24-hour statistics."""

    def __init__(self, symbols: BinanceSymbols, view: MarketView) -> None:
        self.symbols = symbols
        self.view = view
        self._primary: dict[str, BinanceMarket] = {}
        """Per perpetual, its first market (its own name before aliases): the name of its
        liquidations on ``!forceOrder@arr``."""
        for market in symbols.markets:
            self._primary.setdefault(market.key, market)

    def encode(self, spec: StreamSpec, item: Any) -> bytes | None:
        """The event of ``spec`` carried by ``item``, or ``None`` if it carries none."""
        if isinstance(item, MarkSnapshot):
            return self._marks(spec, item)
        if isinstance(item, ForcedOrderUpdate):
            if spec.kind == "allForceOrder":
                return force_order_event(self._primary[item.key], item.order, item.event_ms)
            market = spec.market
            if spec.kind != "forceOrder" or market is None or market.key != item.key:
                return None
            return force_order_event(market, item.order, item.event_ms)
        market = spec.market
        if market is None:
            return None
        if isinstance(item, Tick):
            return self._tick(spec, market, item)
        if isinstance(item, DepthUpdate):
            return self._depth(spec, market, item)
        if isinstance(item, KlineUpdate) and spec.kind == "kline":
            if spec.interval != item.interval:
                return None
            return kline_event(
                market, item.interval, item.kline, item.event_ms, item.first_id, item.last_id
            )
        return None

    def _marks(self, spec: StreamSpec, item: MarkSnapshot) -> bytes | None:
        if spec.kind not in ("markPrice", "allMarkPrice"):
            return None
        if spec.speed_ms == 3000 and item.second % 3:
            return None
        if spec.kind == "allMarkPrice":
            rows = [(m, item.marks[m.key]) for m in self.symbols.markets if m.key in item.marks]
            return mark_prices_event(rows, item.event_ms)
        market = spec.market
        state = item.marks.get(market.key) if market is not None else None
        if market is None or state is None:
            return None
        return mark_price_event(market, state, item.event_ms)

    def _depth(self, spec: StreamSpec, market: BinanceMarket, item: DepthUpdate) -> bytes | None:
        if spec.kind != "depth" or spec.speed_ms != item.speed_ms:
            return None
        ids = (item.first_id, item.last_id, item.first_id - 1)
        book_ms = item.book.ts_ns // 1_000_000
        if spec.levels:
            bids, asks = item.book.bids[: spec.levels], item.book.asks[: spec.levels]
            return depth_update_event(market, ids, item.event_ms, book_ms, bids, asks)
        return depth_update_event(market, ids, item.event_ms, book_ms, item.bids, item.asks)

    def _tick(self, spec: StreamSpec, market: BinanceMarket, tick: Tick) -> bytes | None:
        kind = spec.kind
        if kind in ("trade", "aggTrade"):
            printed = tick_print(tick)
            encode = trade_event if kind == "trade" else agg_trade_event
            return None if printed is None else encode(market, *printed)
        if kind == "bookTicker":
            top = top_of_book(self.view.book(tick, 1))
            return book_ticker_event(market, tick.seq, top, tick.ts_ms, tick.ts_ms)
        if kind in ("ticker", "miniTicker"):
            top = top_of_book(self.view.book(tick, 1))
            row = ticker_24hr_json(market, tick, self.view.stats_24h(market.key), top)
            encode_row = ticker_event if kind == "ticker" else mini_ticker_event
            return encode_row(row, tick.ts_ms)
        return None
