"""The engine's read model: candles with the forming one, books at a tick, 24 h stats, trades."""

from __future__ import annotations

import statistics

import pytest
import trio
import trio.testing

from mdactors.adapters.history import MemoryHistory
from mdactors.domain.book import REGIME_BLOCK, WINDOW, OrderBook, book_at
from mdactors.domain.scenarios import Crash, ScenarioKind, VolatilitySpike
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick
from mdactors.domain.trade_backfill import TRADE_ID_BASE
from mdactors.engine.market import Market
from mdactors.engine.market_view import MarketView
from mdactors.engine.recorder import Recorder
from mdactors.engine.scenarios import ScenarioEngine
from mdactors.engine.topic import Reader

pytestmark = pytest.mark.timeout(30)

KEY = "BTC/USD"
START_NS = 1_700_000_000 * 1_000_000_000 + 5 * 1_000_000_000  # 5 s into a minute


class Clock:
    def __init__(self) -> None:
        self.ns = START_NS

    def __call__(self) -> int:
        return self.ns


def view_with_ticks(count: int) -> tuple[MarketView, list[Tick], Clock]:
    clock = Clock()
    market = Market([KEY], 1.0, seed=7, wall_clock=clock)
    history = MemoryHistory(1_000)
    recorder = Recorder(market, history)
    recorder.backfill(minutes=5)
    actor = market.actor(KEY)
    ticks = []
    for _ in range(count):
        clock.ns += 1_000_000_000
        tick = actor.step()
        actor.emit(tick)
        ticks.append(tick)
    recorder.observe(ticks)
    return MarketView(market, recorder, history), ticks, clock


async def test_candles_are_closed_history_then_the_forming_one() -> None:
    view, ticks, _ = view_with_ticks(10)
    candles = await view.candles(KEY, "1m", None, None, 100)
    forming = view.recorder.open_candle(KEY, "1m")
    assert candles[-1] is forming and not forming.closed
    assert all(c.closed for c in candles[:-1])
    assert [c.start_ms for c in candles] == sorted({c.start_ms for c in candles}), "no repeat"
    assert forming.close == ticks[-1].price
    assert await view.candles(KEY, "1m", None, None, 3) == candles[-3:]
    before = await view.candles(KEY, "1m", None, forming.start_ms - 1, 100)
    assert before == candles[:-1], "a range ending before it leaves the forming candle out"


def test_the_forming_candle_folds_a_tick_the_recorder_has_not_seen() -> None:
    view, ticks, clock = view_with_ticks(3)
    actor = view.market.actor(KEY)
    clock.ns += 1_000_000_000
    unseen = actor.step()
    candle = view.forming_candle(unseen, "1m")
    recorded = view.recorder.open_candle(KEY, "1m")
    assert candle.trades == recorded.trades + 1
    assert candle.close == unseen.price
    assert view.forming_candle(ticks[-1], "1m") is recorded, "a seen tick: the recorder's own"


def test_the_book_at_a_tick_is_the_deterministic_book_shared_by_every_stream() -> None:
    view, ticks, _ = view_with_ticks(2)
    tick = ticks[-1]
    book = view.book(tick, 20)
    published, _ = Reader(view.market.actor(KEY).topic, 0).take(256)
    assert published[-1] is tick and len(published) == 3, "the first tick, then two steps"
    assert book == book_at(spec_for(KEY), tick, 20, published[:-1])
    assert book != book_at(spec_for(KEY), tick, 20), "the window is read"
    assert view.book(tick, 20) is book, "encoded once per tick and depth"
    assert len(view.book(tick, 5).bids) == 5
    assert view.book(ticks[0], 20).seq == ticks[0].seq


def test_stats_and_trades_come_from_the_recorder() -> None:
    view, ticks, _ = view_with_ticks(30)
    stats = view.stats_24h(KEY)
    assert stats.last == ticks[-1].price
    newest = view.recent_trades(KEY, 5)
    assert len(newest) == 5 and newest[0].ts_ns >= newest[-1].ts_ns
    held = view.trades_since(KEY)
    assert [ident for ident, _ in held] == sorted(ident for ident, _ in held)
    assert all(ident == TRADE_ID_BASE + trade.id for ident, trade in held)
    assert held[-1][1] == newest[0]
    middle = held[len(held) // 2][0]
    since = view.trades_since(KEY, middle)
    assert since == [(ident, trade) for ident, trade in held if ident >= middle]
    assert since[0][0] == middle


async def _books_while_stepping(market: Market, view: MarketView, seconds: int) -> list[OrderBook]:
    """Step and publish ``KEY`` once a second for ``seconds``; the view's book of each tick."""
    actor = market.actor(KEY)
    books = []
    for _ in range(seconds):
        await trio.sleep(1.0)
        tick = actor.step()
        actor.emit(tick)
        books.append(view.book(tick, 20))
    return books


def _scenario_market() -> tuple[Market, MarketView]:
    market = Market(
        [KEY], 1.0, seed=7, wall_clock=lambda: START_NS + int(trio.current_time() * 1e9)
    )
    history = MemoryHistory(1_000)
    return market, MarketView(market, Recorder(market, history), history)


def _spread(books: list[OrderBook]) -> float:
    """Mean relative spread of the touch."""
    return statistics.mean((b.asks[0][0] - b.bids[0][0]) / b.asks[0][0] for b in books)


def _depth(books: list[OrderBook]) -> float:
    """Mean size resting in the 20 best levels of both sides."""
    return statistics.mean(sum(q for _, q in b.bids + b.asks) for b in books)


async def test_a_volatility_spike_widens_the_books_spread_and_thins_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market, view = _scenario_market()
    calm = await _books_while_stepping(market, view, 240)
    ScenarioEngine(market).start(
        ScenarioKind.VOLATILITY_SPIKE, VolatilitySpike(5.0), [KEY], duration=600.0, recovery=5.0
    )
    spike = (await _books_while_stepping(market, view, 300))[REGIME_BLOCK * 2 :]
    assert _spread(spike) > 1.5 * _spread(calm), (_spread(calm), _spread(spike))
    assert _depth(spike) < 0.7 * _depth(calm), (_depth(calm), _depth(spike))

    # The levels nearest the touch are pulled: the second level lies further out.
    def gap(books: list[OrderBook]) -> float:
        return statistics.mean(b.asks[1][0] - b.asks[0][0] for b in books)

    assert gap(spike) > gap(calm)


async def test_liquidity_thins_while_a_crash_builds_and_the_price_falls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market, view = _scenario_market()
    before = await _books_while_stepping(market, view, 240)
    ScenarioEngine(market).start(
        ScenarioKind.MARKET_CRASH, Crash(-0.2), [KEY], duration=300.0, recovery=60.0,
        onset=120.0, shared=True,
    )  # fmt: skip
    # From two regime blocks in (the first block read is the one the crash began in).
    crash = (await _books_while_stepping(market, view, 150))[REGIME_BLOCK * 2 :]
    assert crash[-1].bids[0][0] < 0.85 * before[-1].bids[0][0], "the price fell"
    assert _depth(crash) < 0.5 * _depth(before), (_depth(before), _depth(crash))
    assert _spread(crash) > 1.5 * _spread(before), (_spread(before), _spread(crash))


def test_a_worker_that_joins_late_builds_the_same_books_once_it_holds_a_window() -> None:
    """The book is read from the relayed ticks alone: a second process that starts
    relaying midway agrees with the owner from one window of ticks on."""
    owner, ticks, _ = view_with_ticks(3 * WINDOW)
    clock = Clock()
    market = Market([KEY], 1.0, seed=99, wall_clock=clock)  # its own actor never steps
    late = MarketView(market, Recorder(market, MemoryHistory(1_000)), MemoryHistory(1_000))
    joined = WINDOW // 2
    for n, tick in enumerate(ticks[joined:], start=joined):
        market.actor(KEY).relayed(tick)
        agree = late.book(tick, 50) == owner.book(tick, 50)
        if n >= joined + WINDOW:
            assert agree, n
    assert not all(late.book(t, 50) == owner.book(t, 50) for t in ticks[joined : joined + 3]), (
        "before a window, it reads what it holds"
    )


def test_one_build_serves_every_depth_asked_at_a_tick() -> None:
    view, ticks, _ = view_with_ticks(5)
    tick = ticks[-1]
    deep = view.book(tick, 50)
    top = view.book(tick, 1)
    assert (top.bids, top.asks) == (deep.bids[:1], deep.asks[:1])
    assert view.book(tick, 1) is top
    fresh = MarketView(view.market, view.recorder, view.history)
    assert fresh.book(tick, 1) == top, "the same book whether built deep or shallow"
