"""The synthetic order book: deterministic, never crossed, queues that persist and deplete."""

from __future__ import annotations

import itertools
import math
import random
import statistics

import numpy as np
import pytest

from mdactors.domain.book import (
    DEPTH_REGIMES,
    REFRESH_TICKS,
    REGIME_BLOCK,
    WINDOW,
    OrderBook,
    book_at,
    depth_regime,
    grid_step,
    synthesize_book,
)
from mdactors.domain.book_diff import book_diff
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.models import SECONDS_PER_YEAR
from mdactors.domain.quotes import quote
from mdactors.domain.symbols import KNOWN_SPECS, SymbolSpec, spec_for
from mdactors.domain.tick import Tick
from mdactors.engine.symbol_actor import SymbolActor

KEYS = ["BTC/USD", "ETH/USD", "ADA/USD", "DOGE/USD", "USDT/USD", "BTC/ETH", "QQQ/USD"]
DEPTH = 100
MONDAY_NOON_NS = 1_767_614_400 * 10**9  # 2026-01-05 12:00 UTC


def _spec(key: str) -> SymbolSpec:
    return KNOWN_SPECS.get(key) or spec_for(key)


def _tick(
    spec: SymbolSpec, seq: int, bid: float, ask: float, volume: float = 0.0, change: float = 0.0
) -> Tick:
    mid = (bid + ask) / 2.0
    return Tick(spec.key, seq, mid, bid, ask, volume, seq * 10**9, change, 0.0, mid, mid, 0.0)


def _walk(spec: SymbolSpec, steps: int, seed: int, sigma_scale: float = 1.0) -> list[Tick]:
    """Ticks of a one-second random walk at the symbol's volatility, the spread's
    activity varying, each printing a small size at the side that moved."""
    rng = random.Random(seed)
    sigma = sigma_scale * spec.annual_volatility / SECONDS_PER_YEAR**0.5
    touch = spec.daily_volume / 20_000.0
    mid, activity, ticks = spec.seed_price, 0.3, []
    for seq in range(1, steps + 1):
        move = rng.gauss(0.0, sigma)
        mid *= 1.0 + move
        activity = min(1.0, max(0.0, activity + rng.gauss(0.0, 0.05)))
        bid, ask = quote(spec, mid, activity)
        volume = round(touch * rng.uniform(0.01, 0.3), spec.qty_decimals)
        ticks.append(_tick(spec, seq, bid, ask, volume, -1.0 if move < 0 else 1.0))
    return ticks


def _zigzag(spec: SymbolSpec, stress: float, ticks: int = REGIME_BLOCK) -> list[Tick]:
    """One-second ticks whose price moves up and down by ``stress`` times the mean
    |move| of the symbol's table volatility, the quote held still."""
    move = stress * spec.annual_volatility * (2 / math.pi / SECONDS_PER_YEAR) ** 0.5
    bid, ask = quote(spec, spec.seed_price, 0.3)
    price = spec.seed_price
    return [
        Tick(
            spec.key,
            seq,
            price * math.exp(move * (seq % 2)),
            bid,
            ask,
            0.0,
            seq * 10**9,
            0.0,
            0.0,
            price,
            price,
            0.0,
        )
        for seq in range(1, ticks + 1)
    ]


def _books(spec: SymbolSpec, ticks: list[Tick], depth: int = DEPTH) -> list[OrderBook]:
    """The book of each tick, given the ticks before it (as the market view builds it)."""
    return [
        book_at(spec, tick, depth, ticks[max(0, n - WINDOW) : n]) for n, tick in enumerate(ticks)
    ]


def _changed_levels(old: OrderBook, new: OrderBook) -> int:
    bids, asks = book_diff(old, new)
    return len(bids) + len(asks)


@pytest.mark.parametrize("key", KEYS)
def test_same_tick_and_history_give_the_same_book_and_a_shallower_book_is_a_prefix(
    key: str,
) -> None:
    spec = _spec(key)
    ticks = _walk(spec, 300, seed=4)
    tick, before = ticks[-1], ticks[:-1]
    book = book_at(spec, tick, DEPTH, before)
    assert book_at(spec, tick, DEPTH, before) == book
    # Ticks older than the window, or not before the tick, are not read.
    assert book_at(spec, tick, DEPTH, before[-WINDOW:] + ticks[-1:]) == book
    top = book_at(spec, tick, 7, before)
    assert top.bids == book.bids[:7] and top.asks == book.asks[:7]
    assert (book.seq, book.ts_ns) == (tick.seq, tick.ts_ns)


@pytest.mark.parametrize("key", KEYS)
def test_books_along_a_walk_are_never_crossed_and_sizes_are_positive_lots(key: str) -> None:
    spec = _spec(key)
    step = grid_step(spec)
    ticks = _walk(spec, 250, seed=1)
    for tick, book in zip(ticks, _books(spec, ticks), strict=True):
        assert len(book.asks) == DEPTH and 0 < len(book.bids) <= DEPTH
        assert book.bids[0][0] <= tick.bid < tick.ask <= book.asks[0][0]
        assert all(a[0] > b[0] for a, b in itertools.pairwise(book.bids))
        assert all(a[0] < b[0] for a, b in itertools.pairwise(book.asks))
        for price, qty in book.bids + book.asks:
            assert price > 0 and qty >= spec.lot_size
            assert abs(qty * spec.qty_scale - round(qty * spec.qty_scale)) < 1e-6
            assert abs(price * spec.price_scale - round(price * spec.price_scale)) < 1e-6
        # Behind the touch, levels lie on the symbol's grid.
        for price, _ in book.bids[1:] + book.asks[1:]:
            assert round(price * spec.price_scale) % step == 0
    assert step >= 1 and (step == 1 or step * spec.tick_size < 0.01 * spec.seed_price)


@pytest.mark.parametrize("key", ["BTC/USD", "ETH/USD", "USDT/USD"])
def test_a_queue_keeps_its_size_while_the_mid_moves(key: str) -> None:
    """Queues are keyed by absolute price: the same history and tick sequence with the
    quote moved several grid steps gives the same size at every price both books show."""
    spec = _spec(key)
    step = grid_step(spec) / spec.price_scale
    ticks = _walk(spec, 200, seed=3)
    last = ticks[-1]
    here = book_at(spec, _tick(spec, last.seq, last.bid, last.ask), DEPTH, ticks[:-1])
    shift = 7 * step
    away = _tick(spec, last.seq, last.bid + shift, last.ask + shift)
    there = book_at(spec, away, DEPTH, ticks[:-1])
    for side in ("bids", "asks"):
        sizes, moved = dict(getattr(here, side)[1:]), dict(getattr(there, side)[1:])
        shared = sizes.keys() & moved.keys()
        assert len(shared) > DEPTH // 2
        # Only a queue redrawn at this very tick takes the depth of the quote it sees.
        redrawn = sum(sizes[price] != moved[price] for price in shared)
        assert redrawn <= 1 + len(shared) // 30, redrawn


@pytest.mark.parametrize("key", ["BTC/USD", "USDT/USD"])
@pytest.mark.parametrize("side", ["sell", "buy"])
def test_a_print_takes_its_size_out_of_the_touch_and_the_queue_stays_depleted(
    key: str, side: str
) -> None:
    spec = _spec(key)
    bid, ask = quote(spec, spec.seed_price, 0.4)
    history = [_tick(spec, seq, bid, ask) for seq in range(1, 120)]
    plain = book_at(spec, _tick(spec, 120, bid, ask), DEPTH, history)
    hit, other = ("bids", "asks") if side == "sell" else ("asks", "bids")
    price, queue = getattr(plain, hit)[0]
    change = -1.0 if side == "sell" else 1.0
    part = round(queue / 3, spec.qty_decimals)
    traded = _tick(spec, 120, bid, ask, part, change)
    book = book_at(spec, traded, DEPTH, history)
    assert getattr(book, hit)[0] == (price, pytest.approx(queue - part))
    assert getattr(book, hit)[1:] == getattr(plain, hit)[1:], "only the touch is traded"
    assert getattr(book, other) == getattr(plain, other)
    # A tick later, with the quote unchanged and no print, the queue is still short by
    # the print (compared with the same tick after a history without it).
    later = _tick(spec, 121, bid, ask)
    still = book_at(spec, later, DEPTH, [*history, traded])
    fresh = book_at(spec, later, DEPTH, [*history, plain_tick := _tick(spec, 120, bid, ask)])
    assert plain_tick.volume == 0
    now = dict(getattr(fresh, hit))[price]
    assert dict(getattr(still, hit))[price] == pytest.approx(max(now - part, spec.lot_size))


@pytest.mark.parametrize("key", ["BTC/USD", "USDT/USD"])
def test_a_swept_level_stays_gone_until_refilled_over_time(key: str) -> None:
    spec = _spec(key)
    bid, ask = quote(spec, spec.seed_price, 0.4)
    history = [_tick(spec, seq, bid, ask) for seq in range(1, 200)]
    plain = book_at(spec, _tick(spec, 200, bid, ask), DEPTH, history)
    price, queue = plain.bids[0]
    swept = _tick(spec, 200, bid, ask, queue * 2, -1.0)
    book = book_at(spec, swept, DEPTH, history)
    assert book.bids[: DEPTH - 1] == plain.bids[1:], "the side starts behind the swept level"
    assert len(book.bids) == DEPTH and book.bids[0][0] < book.asks[0][0]
    ticks, gone_for = [*history, swept], 0
    for seq in range(201, 201 + REFRESH_TICKS):
        tick = _tick(spec, seq, bid, ask)
        if price in dict(book_at(spec, tick, DEPTH, ticks).bids):
            break
        gone_for += 1
        ticks.append(tick)
    assert 1 <= gone_for < REFRESH_TICKS, "gone at the next tick, refilled later"


def test_sizes_grow_with_depth_as_the_profile_says_on_average() -> None:
    """With the quote still at the narrowest spread, the mean size at level ``k`` is
    about ``daily_volume / 20 000 × (1 + 0.35 k)``."""
    spec = KNOWN_SPECS["ETH/USD"]
    bid, ask = quote(spec, spec.seed_price, 0.0)
    ticks = [_tick(spec, seq, bid, ask) for seq in range(1, 6_000)]
    books = [
        book_at(spec, ticks[n], DEPTH, ticks[n - WINDOW : n]) for n in range(WINDOW, 6_000, 37)
    ]
    touch = spec.daily_volume / 20_000.0
    means = [statistics.mean(book.bids[k][1] for book in books) for k in range(DEPTH)]
    for k in (0, 1, 5, 20, 50, 99):
        assert means[k] == pytest.approx(touch * (1 + 0.35 * k), rel=0.2)
    assert means[DEPTH - 1] > 10 * means[0]


def test_a_wider_spread_exposes_larger_queues_behind_the_touch() -> None:
    spec = KNOWN_SPECS["USDT/USD"]
    calm, busy = quote(spec, 1.0, 0.0), quote(spec, 1.0, 1.0)
    assert busy[0] < calm[0] - 5 * spec.tick_size
    history = [_tick(spec, seq, *calm) for seq in range(1, 4_000)]
    seqs = range(WINDOW + 1, 4_000, 53)
    calm_books = [
        book_at(spec, history[n - 1], DEPTH, history[n - 1 - WINDOW : n - 1]) for n in seqs
    ]
    busy_books = [
        book_at(spec, _tick(spec, n, *busy), DEPTH, history[n - 1 - WINDOW : n - 1]) for n in seqs
    ]
    for side in ("bids", "asks"):
        calm_first = statistics.mean(getattr(b, side)[1][1] for b in calm_books)
        busy_first = statistics.mean(getattr(b, side)[1][1] for b in busy_books)
        assert busy_first > 2 * calm_first


def test_bids_stop_above_zero_for_a_price_near_the_tick() -> None:
    spec = KNOWN_SPECS["DOGE/USD"]
    book = synthesize_book(spec, 0.000005, 0.000007, DEPTH, 1, 0)
    assert 0 < len(book.bids) < DEPTH and book.bids[-1][0] > 0
    assert len(book.asks) == DEPTH


@pytest.mark.parametrize("key", ["BTC/USD", "ETH/USD", "USDT/USD"])
def test_a_depth_diff_carries_under_a_tenth_of_the_levels_at_one_second_ticks(key: str) -> None:
    """The Binance ``@depth`` (1 s) stream at the default 1 s ticks: one tick per diff,
    on the symbol's own model in a busy hour."""
    spec = spec_for(key)
    clock = itertools.count(MONDAY_NOON_NS, 10**9)
    actor = SymbolActor(
        spec,
        default_model(spec),
        1.0,
        np.random.default_rng(11),
        factor=MarketFactor(11),
        wall_clock=lambda: next(clock),
    )
    ticks = [actor.step() for _ in range(600)]
    books = _books(spec, ticks)[WINDOW:]
    shares = [
        _changed_levels(old, new) / (len(new.bids) + len(new.asks))
        for old, new in itertools.pairwise(books)
    ]
    assert statistics.mean(shares) < 0.10, statistics.mean(shares)
    # ... and yet the queues live: every level changes now and then.
    assert all(len({book.asks[k][1] for book in books}) > 1 for k in range(DEPTH))


def test_the_depth_regime_thins_the_book_when_the_market_moves_fast() -> None:
    spec = KNOWN_SPECS["BTC/USD"]
    regimes = {scale: depth_regime(spec, _zigzag(spec, scale)) for scale in (1, 2, 3, 5, 8)}
    assert regimes == {1: 0, 2: 0, 3: 1, 5: 2, 8: 3}
    assert depth_regime(spec, []) == depth_regime(spec, _zigzag(spec, 9.0)[:1]) == 0

    def book_after(stress: float) -> OrderBook:
        ticks = _zigzag(spec, stress, 4 * REGIME_BLOCK)
        return book_at(spec, ticks[-1], DEPTH, ticks[:-1])

    calm, wild = book_after(1.0), book_after(9.0)
    share, pulled = DEPTH_REGIMES[3].share, DEPTH_REGIMES[3].pulled
    step = grid_step(spec) / spec.price_scale
    for side in ("bids", "asks"):
        calm_levels, wild_levels = getattr(calm, side), getattr(wild, side)
        # The touch is the quote, then the nearest grid levels are pulled.
        assert wild_levels[0][0] == calm_levels[0][0]
        assert wild_levels[1][0] == calm_levels[1 + pulled][0]
        assert abs(wild_levels[1][0] - wild_levels[0][0]) > pulled * step
        # Every queue holds the regime's share of what it holds when calm.
        sizes = dict(calm_levels)
        ratios = [qty / sizes[price] for price, qty in wild_levels if price in sizes]
        assert len(ratios) > DEPTH // 2
        assert statistics.median(ratios) == pytest.approx(share, rel=0.05)
