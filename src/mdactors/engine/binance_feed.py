"""The Binance streams' shared producers: one feed per symbol, one for all-market tickers.

A :class:`SymbolFeed` follows its actor's tick Topic and publishes, into a
Topic of its own, every tick (for the trade/ticker/bookTicker streams), the
kline updates of the intervals someone follows, and depth diffs on Binance's
100 ms / 1000 ms cadence. Sessions read that Topic like any other, so the
work and the encodings of an event are shared by all of them, and a slow
session can only hurt itself.

Depth sequencing: update ids are tick sequences and the book of tick ``n``
is the deterministic :func:`~mdactors.domain.book.book_at` of that
tick, so ``GET /api/v3/depth`` (``lastUpdateId`` = the latest tick) needs no
shared state with the stream. Each diff takes the book of the previous
event's ``u`` to the book of the newest tick: ``U`` is the previous ``u`` + 1,
without holes. A session that falls more than the Topic behind loses events,
which it sees as a gap in ``U``/``u`` (Binance's signal to resync), never as
a silently wrong book.

Work is done on demand: a feed computes depth and klines only while some
session :meth:`~SymbolFeed.want`\\ s them.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from mdactors.domain.book import Level, OrderBook
from mdactors.domain.book_diff import DiffWindow
from mdactors.domain.candles import Candle
from mdactors.domain.klines import KLINE_INTERVALS, Kline, KlineInterval, aggregate, kline_of
from mdactors.domain.tick import Tick, last_trade_id
from mdactors.domain.trade_backfill import TRADE_ID_BASE
from mdactors.engine.market_view import MarketView
from mdactors.engine.symbol_actor import SymbolActor
from mdactors.engine.topic import Topic, TopicClosed

__all__ = [
    "AllTickers",
    "AllTickersFeed",
    "DepthUpdate",
    "FeedEvent",
    "FeedItem",
    "KlineUpdate",
    "SymbolFeed",
]

FEED_CAPACITY = 1024
DEPTH_SPEEDS_MS = (100, 1000)


class FeedEvent:
    """What every event a feed makes (beside the ticks it passes on) has: its time."""

    __slots__ = ()
    event_ms: int

    @property
    def ts_ns(self) -> int:
        """When the event was made (its ``E``, in ns): the stamp publication latency is
        measured from, as a tick's is (:meth:`mdactors.engine.outlet.Outlet.observe`)."""
        return self.event_ms * 1_000_000


@dataclass(slots=True, eq=False)
class DepthUpdate(FeedEvent):
    """A diff from update ``first_id - 1`` to ``last_id`` (``U``/``u``), and the book at ``u``."""

    speed_ms: int
    first_id: int
    last_id: int
    event_ms: int
    bids: list[Level]
    asks: list[Level]
    book: OrderBook
    wire: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(slots=True, eq=False)
class KlineUpdate(FeedEvent):
    """The candle of ``interval`` as of ``event_ms`` (``kline.closed`` on the closing update)."""

    interval: str
    kline: Kline
    event_ms: int
    first_id: int
    last_id: int
    wire: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(slots=True, eq=False)
class AllTickers(FeedEvent):
    """A once-a-second snapshot of every market's latest tick (for ``!ticker@arr``)."""

    ticks: dict[str, Tick]
    event_ms: int
    wire: dict[str, bytes] = field(default_factory=dict, repr=False)


FeedItem = Tick | DepthUpdate | KlineUpdate | AllTickers


@dataclass(slots=True)
class _DepthState:
    book: OrderBook
    """The book of the last event (what its subscribers hold)."""
    next_at: float
    window: DiffWindow
    """The books of the ticks since ``book``: a snapshot may have been taken at any."""


@dataclass(slots=True)
class _KlineState:
    interval: KlineInterval
    start_ms: int = -1
    closed_part: Kline | None = None
    """Aggregate of the closed base candles of the current bucket (derived intervals)."""
    base: Candle | None = None
    """The base candle as of the last tick (folded into ``closed_part`` when it closes)."""
    last: Kline | None = None
    ready: bool = False


def _merge(first: Kline | None, second: Kline, start_ms: int, end_ms: int) -> Kline:
    if first is None:
        return Kline(start_ms, end_ms, *_ohlcvt(second), False)
    return Kline(
        start_ms,
        end_ms,
        first.open,
        max(first.high, second.high),
        min(first.low, second.low),
        second.close,
        first.volume + second.volume,
        first.trades + second.trades,
        False,
    )


def _ohlcvt(kline: Kline) -> tuple[float, float, float, float, float, int]:
    return kline.open, kline.high, kline.low, kline.close, kline.volume, kline.trades


def _closed(kline: Kline) -> Kline:
    return Kline(kline.start_ms, kline.end_ms, *_ohlcvt(kline), True)


class SymbolFeed:
    """One symbol's Binance events, published once for every session.

    Candles (closed and forming) and books come from ``view``; ``wall_clock``
    (ns) is the market's, which stamps the ticks.
    """

    def __init__(
        self,
        actor: SymbolActor,
        view: MarketView,
        book_depth: int,
        wall_clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.view = view
        self.actor = actor
        self.key = actor.spec.key
        self.topic: Topic[FeedItem] = Topic(f"binance:{self.key}", FEED_CAPACITY)
        self.book_depth = book_depth
        self._wall_clock = wall_clock
        self._wants: Counter[tuple[str, object]] = Counter()
        self._depth: dict[int, _DepthState] = {}
        self._klines: dict[str, _KlineState] = {}

    def _now_ms(self) -> int:
        return self._wall_clock() // 1_000_000

    # ------------------------------------------------------------------ demand

    def want(self, kind: str, arg: object) -> None:
        """A session follows depth at speed ``arg`` (``kind`` ``depth``) or klines of
        interval ``arg`` (``kind`` ``kline``); starts that work if it is new."""
        self._wants[(kind, arg)] += 1
        if self._wants[(kind, arg)] > 1:
            return
        if kind == "depth":
            assert isinstance(arg, int)
            book = self.book_at(self.actor.latest)
            self._depth[arg] = _DepthState(book, trio.current_time(), DiffWindow(book))
        else:
            assert isinstance(arg, str)
            self._klines[arg] = _KlineState(KLINE_INTERVALS[arg])

    def unwant(self, kind: str, arg: object) -> None:
        """Undo one :meth:`want`; the work stops when nobody follows it any more."""
        self._wants[(kind, arg)] -= 1
        if self._wants[(kind, arg)] > 0:
            return
        del self._wants[(kind, arg)]
        if kind == "depth":
            self._depth.pop(arg, None)  # type: ignore[call-overload]
        else:
            self._klines.pop(arg, None)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ books

    def book_at(self, tick: Tick) -> OrderBook:
        """The Binance view's full book at ``tick`` (``book_depth`` levels a side)."""
        return self.view.book(tick, self.book_depth)

    def _see(self, tick: Tick) -> None:
        """Fold ``tick``'s book into the next diffs: a snapshot may be taken at it."""
        book = self.book_at(tick)
        for state in self._depth.values():
            if tick.seq > state.book.seq:
                state.window.see(book)

    def _push_depth(self, now: float) -> None:
        tick = self.actor.latest
        for speed, state in self._depth.items():
            if now < state.next_at:
                continue
            state.next_at = max(state.next_at + speed / 1000, now)
            if tick.seq <= state.book.seq:
                continue
            book = self.book_at(tick)
            bids, asks = state.window.diff(book)
            state.window = DiffWindow(book)
            event_ms = self._now_ms()
            self.topic.publish(
                DepthUpdate(speed, state.book.seq + 1, tick.seq, event_ms, bids, asks, book)
            )
            state.book = book

    # ------------------------------------------------------------------ klines

    async def _prepare(self, state: _KlineState, tick: Tick) -> None:
        """Start a bucket: for a derived interval, aggregate its closed base candles."""
        interval = state.interval
        state.start_ms = interval.start(tick.ts_ms)
        state.closed_part = None
        state.base = None
        state.ready = True
        if interval.name == interval.base:
            return
        base_start = KLINE_INTERVALS[interval.base].start(tick.ts_ms)
        if base_start <= state.start_ms:
            return
        candles = await self.view.candles(
            self.key, interval.base, state.start_ms, base_start - 1, 10_000
        )
        merged = aggregate(candles, interval, 0)
        state.closed_part = merged[-1] if merged else None

    async def _kline_updates(self, tick: Tick) -> None:
        for name, state in list(self._klines.items()):
            interval = state.interval
            if state.ready and interval.start(tick.ts_ms) != state.start_ms:
                self._close_kline(state, tick.ts_ms)
            if not state.ready:
                await self._prepare(state, tick)
                if self._klines.get(name) is not state:
                    continue
            base = self.view.forming_candle(tick, interval.base)
            previous = state.base
            if previous is not None and previous.start_ms != base.start_ms:
                base_interval = KLINE_INTERVALS[interval.base]
                state.closed_part = _merge(
                    state.closed_part,
                    kline_of(previous, base_interval),
                    state.start_ms,
                    interval.end(state.start_ms),
                )
            state.base = base
            current = _merge(
                state.closed_part,
                kline_of(base, KLINE_INTERVALS[interval.base]),
                state.start_ms,
                interval.end(state.start_ms),
            )
            state.last = current
            last_id = TRADE_ID_BASE + last_trade_id(tick)
            self.topic.publish(
                KlineUpdate(name, current, tick.ts_ms, last_id - current.trades + 1, last_id)
            )

    def _close_kline(self, state: _KlineState, now_ms: int) -> None:
        last = state.last
        state.ready = False
        state.last = None
        if last is None:
            return
        last_id = TRADE_ID_BASE + last_trade_id(self.actor.latest)
        self.topic.publish(
            KlineUpdate(
                state.interval.name, _closed(last), now_ms, last_id - last.trades + 1, last_id
            )
        )

    def _close_due_klines(self) -> None:
        now_ms = self._now_ms()
        for state in self._klines.values():
            if state.ready and state.interval.end(state.start_ms) <= now_ms:
                self._close_kline(state, now_ms)

    def _next_deadline(self) -> float:
        deadline = math.inf
        for state in self._depth.values():
            deadline = min(deadline, state.next_at)
        if self._klines:
            now_ms = self._now_ms()
            ends = [s.interval.end(s.start_ms) for s in self._klines.values() if s.ready]
            if ends:
                deadline = min(deadline, trio.current_time() + (min(ends) - now_ms) / 1000)
        return deadline

    # ------------------------------------------------------------------ run

    async def run(self) -> None:
        """Follow the actor until its Topic closes (then close this feed's Topic)."""
        reader = self.actor.topic.reader(from_latest=False)
        try:
            while True:
                with trio.move_on_at(self._next_deadline()):
                    await reader.wait()
                ticks, _ = reader.take(reader.lag)
                for tick in ticks:
                    if self._klines:
                        await self._kline_updates(tick)
                    if self._depth:
                        self._see(tick)
                    self.topic.publish(tick)
                now = trio.current_time()
                if self._depth:
                    self._push_depth(now)
                if self._klines:
                    self._close_due_klines()
        except TopicClosed:
            self.topic.close()


class AllTickersFeed:
    """Publishes every market's latest tick once a second (``!ticker@arr``, ``!miniTicker@arr``)."""

    def __init__(self, actors: dict[str, SymbolActor], period: float = 1.0) -> None:
        self.actors = actors
        self.period = period
        self.topic: Topic[AllTickers] = Topic("binance:!arr", 64)

    async def run(self) -> None:
        """Publish on an absolute one-second cadence until cancelled."""
        deadline = trio.current_time()
        while True:
            deadline += self.period
            await trio.sleep_until(deadline)
            ticks = {key: actor.latest for key, actor in self.actors.items()}
            self.topic.publish(AllTickers(ticks, time.time_ns() // 1_000_000))
