"""The read model: what every protocol asks of the market, answered in one place.

REST, the UI API, our WebSocket protocol and the Binance view all render the
same four questions, so none of them computes an answer itself:

- candles of an interval in a time range, the forming one included
  (:meth:`MarketView.candles`), and the forming candle as of a tick the
  recorder may not have folded yet (:meth:`MarketView.forming_candle`);
- the order book at a tick (:meth:`MarketView.book`), deterministic in the
  tick (its print taken out of the touch), so a stream and a later snapshot at
  the same tick agree;
- rolling 24 h statistics up to the latest tick (:meth:`MarketView.stats_24h`);
- the trade tape: the newest prints, or every print since a trade id
  (:meth:`MarketView.recent_trades`, :meth:`MarketView.trades_since`).

Keys are resolved symbol keys (``BTC/USD``); resolving a client's spelling
(and its :class:`~mdactors.engine.market.UnknownSymbol`) is the caller's.
"""

from __future__ import annotations

import time
from collections import deque

from mdactors.adapters.history import HistoryStore
from mdactors.domain.book import WINDOW, OrderBook, book_at
from mdactors.domain.candles import Candle, fold_tick
from mdactors.domain.stats import RollingStats
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick, Trade
from mdactors.domain.trade_backfill import TRADE_ID_BASE
from mdactors.engine.market import Market
from mdactors.engine.recorder import Recorder
from mdactors.engine.topic import Reader, Topic

__all__ = ["MarketView"]


class _RecentTicks:
    """The newest ticks a symbol's Topic published, caught up whenever asked.

    Read on demand, not by a task: each :meth:`before` takes what was
    published since the last call. It starts from the oldest tick the Topic
    still holds, so the first book already has its window, and it keeps a
    window more than the Topic, so a reader as far behind as the Topic allows
    (a stream's feed) still finds the whole window of the tick it is at.
    """

    __slots__ = ("_reader", "_ticks")

    def __init__(self, topic: Topic[Tick]) -> None:
        self._reader = Reader(topic, max(topic.published - topic.capacity, 0))
        self._ticks: deque[Tick] = deque(maxlen=topic.capacity + WINDOW)

    def before(self, seq: int) -> list[Tick]:
        """The ticks held of the :data:`~mdactors.domain.book.WINDOW` before ``seq``,
        oldest first (a Topic publishes in sequence order)."""
        reader = self._reader
        if reader.lag:
            self._ticks.extend(reader.take(reader.lag)[0])
        low, window = seq - WINDOW, []
        for tick in reversed(self._ticks):
            if tick.seq < low:
                break
            if tick.seq < seq:
                window.append(tick)
        window.reverse()
        return window


class MarketView:
    """Candles, books, 24 h statistics and trades of every symbol, for any protocol."""

    def __init__(self, market: Market, recorder: Recorder, history: HistoryStore) -> None:
        self.market = market
        self.recorder = recorder
        self.history = history
        self._books: dict[tuple[str, int], OrderBook] = {}
        """The newest book per (symbol, depth): every stream at one tick shares it."""
        self._recent: dict[str, _RecentTicks] = {}
        self._deepest: dict[str, tuple[int, OrderBook]] = {}
        """Per symbol, the deepest book built at its newest tick asked for, and its depth."""

    async def candles(
        self, key: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int
    ) -> list[Candle]:
        """The last ``limit`` candles of ``interval`` opening in ``[start_ms, end_ms]``
        (open ends: from the first held, up to now), oldest first: closed ones from
        history (the store's, then the start-up backfill's before the oldest it
        holds), then the one still forming when it opens in the range."""
        start = start_ms if start_ms is not None else 0
        end = end_ms if end_ms is not None else time.time_ns() // 1_000_000
        candles = await self.history.candles(key, interval, start, end, limit)
        oldest = candles[0].start_ms if candles else end + 1
        if len(candles) < limit and oldest > start:
            # Older than the store holds: the start-up backfill's columns.
            more = limit - len(candles)
            candles = self.recorder.deep_candles(key, interval, start, oldest - 1, more) + candles
        current = self.recorder.open_candle(key, interval)
        if current is not None and start <= current.start_ms <= end:
            if candles and candles[-1].start_ms >= current.start_ms:
                candles = [c for c in candles if c.start_ms < current.start_ms]
            candles.append(current)
        return candles[-limit:]

    def forming_candle(self, tick: Tick, interval: str) -> Candle:
        """The open candle of ``interval`` including ``tick``: the recorder's, with
        ``tick`` folded in when the recorder has not seen it yet (a stream may be
        ahead of the recorder's reader)."""
        recorder = self.recorder
        candle = recorder.open_candle(tick.symbol, interval)
        if recorder.observed_seq.get(tick.symbol, 0) < tick.seq or candle is None:
            candle = fold_tick(candle, tick, interval)
        return candle

    def book(self, tick: Tick, depth: int) -> OrderBook:
        """The book of ``tick.symbol`` at ``tick``, ``depth`` levels a side:
        :func:`~mdactors.domain.book.book_at` of ``tick`` and the ticks the
        symbol's Topic published before it (its window), so a stream and a
        snapshot at one tick agree, in every process that relays the symbol."""
        key = tick.symbol
        slot = (key, depth)
        cached = self._books.get(slot)
        if cached is not None and cached.seq == tick.seq:
            return cached
        built, deepest = self._deepest.get(key, (0, None))
        if deepest is not None and deepest.seq == tick.seq and depth <= built:
            # A shallower book is a prefix of a deeper one: one build serves every depth.
            book = OrderBook(key, deepest.bids[:depth], deepest.asks[:depth], tick.ts_ns, tick.seq)
        else:
            recent = self._recent.get(key)
            if recent is None:
                recent = self._recent[key] = _RecentTicks(self.market.actors[key].topic)
            book = book_at(spec_for(key), tick, depth, recent.before(tick.seq))
            if deepest is None or deepest.seq != tick.seq or depth > built:
                self._deepest[key] = (depth, book)
        self._books[slot] = book
        return book

    def stats_24h(self, key: str) -> RollingStats:
        """Rolling 24 h statistics of ``key`` up to its latest tick."""
        return self.recorder.stats_24h(key)

    def day_closes(self, key: str, minutes: int) -> list[float]:
        """Closes of the last ``minutes`` one-minute candles (closed, then the open one)."""
        return self.recorder.day_closes(key, minutes)

    def recent_trades(self, key: str, limit: int) -> list[Trade]:
        """The newest ``limit`` prints of ``key``, newest first."""
        return self.recorder.recent_trades(key, limit)

    def trades_since(self, key: str, first_id: int | None = None) -> list[tuple[int, Trade]]:
        """``(trade id, trade)`` of every print held with an id of at least ``first_id``
        (all when ``None``), oldest first. Ids are public: ``TRADE_ID_BASE`` plus the
        tape's id, so the prints made before start-up (backfill) are numbered too."""
        tape = self.recorder.trades[key]
        held = [(TRADE_ID_BASE + trade.id, trade) for trade in tape]
        if first_id is None:
            return held
        return [(ident, trade) for ident, trade in held if ident >= first_id]
