"""The synthetic order book: deterministic, never crossed, and evolving level by level."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from mdactors.domain.book import OrderBook, book_at, grid_step, synthesize_book
from mdactors.domain.quotes import quote
from mdactors.domain.symbols import KNOWN_SPECS, SymbolSpec, spec_for
from mdactors.domain.tick import Tick

KEYS = ["BTC/USD", "ETH/USD", "ADA/USD", "DOGE/USD", "USDT/USD", "BTC/ETH", "QQQ/USD"]
DEPTH = 100


def _spec(key: str) -> SymbolSpec:
    return KNOWN_SPECS.get(key) or spec_for(key)


def _changed_levels(old: OrderBook, new: OrderBook) -> int:
    """Levels a diff from ``old`` to ``new`` must carry (changed, added or removed)."""
    count = 0
    for before, after in ((old.bids, new.bids), (old.asks, new.asks)):
        previous, current = dict(before), dict(after)
        count += sum(1 for price, qty in current.items() if previous.get(price) != qty)
        count += len(previous.keys() - current.keys())
    return count


def _walk(spec: SymbolSpec, steps: int, seed: int) -> list[tuple[float, float]]:
    """Quotes of a 50 ms random walk at the symbol's volatility, activity varying."""
    rng = random.Random(seed)
    sigma = spec.annual_volatility * (0.05 / (365 * 86_400)) ** 0.5
    mid, activity, quotes = spec.seed_price, 0.3, []
    for _ in range(steps):
        mid *= 1.0 + rng.gauss(0.0, sigma)
        activity = min(1.0, max(0.0, activity + rng.gauss(0.0, 0.05)))
        quotes.append(quote(spec, mid, activity))
    return quotes


@pytest.mark.parametrize("key", KEYS)
def test_same_tick_gives_the_same_book_and_a_shallower_book_is_a_prefix(key: str) -> None:
    spec = _spec(key)
    bid, ask = quote(spec, spec.seed_price, 0.4)
    book = synthesize_book(spec, bid, ask, DEPTH, seq=11, ts_ns=5)
    assert synthesize_book(spec, bid, ask, DEPTH, seq=11, ts_ns=5) == book
    top = synthesize_book(spec, bid, ask, 7, seq=11, ts_ns=5)
    assert top.bids == book.bids[:7] and top.asks == book.asks[:7]
    assert (book.bids[0][0], book.asks[0][0]) == (bid, ask)


@pytest.mark.parametrize("key", KEYS)
def test_books_along_a_walk_are_never_crossed_and_sizes_are_positive_lots(key: str) -> None:
    spec = _spec(key)
    for seq, (bid, ask) in enumerate(_walk(spec, 200, seed=1)):
        book = synthesize_book(spec, bid, ask, DEPTH, seq, 0)
        assert len(book.asks) == DEPTH and 0 < len(book.bids) <= DEPTH
        assert book.bids[0][0] < book.asks[0][0]
        assert all(a[0] > b[0] for a, b in zip(book.bids, book.bids[1:], strict=False))
        assert all(a[0] < b[0] for a, b in zip(book.asks, book.asks[1:], strict=False))
        for price, qty in book.bids + book.asks:
            assert price > 0 and qty >= spec.lot_size
            assert abs(qty * spec.qty_scale - round(qty * spec.qty_scale)) < 1e-6
            assert abs(price * spec.price_scale - round(price * spec.price_scale)) < 1e-6


@pytest.mark.parametrize("key", KEYS)
def test_levels_behind_the_touch_lie_on_the_symbols_grid(key: str) -> None:
    spec = _spec(key)
    step = grid_step(spec)
    bid, ask = quote(spec, spec.seed_price, 0.9)
    book = synthesize_book(spec, bid, ask, DEPTH, seq=3, ts_ns=0)
    for price, _ in book.bids[1:] + book.asks[1:]:
        assert round(price * spec.price_scale) % step == 0
    assert step >= 1 and (step == 1 or step * spec.tick_size < 0.01 * spec.seed_price)


@pytest.mark.parametrize("key", KEYS)
def test_with_the_quote_still_a_tick_changes_a_few_levels(key: str) -> None:
    spec = _spec(key)
    bid, ask = quote(spec, spec.seed_price, 0.2)
    books = [synthesize_book(spec, bid, ask, DEPTH, seq, 0) for seq in range(1000, 1400)]
    changes = [_changed_levels(a, b) for a, b in itertools.pairwise(books)]
    levels = 2 * DEPTH
    assert max(changes) < 0.2 * levels
    assert statistics.mean(changes) < 0.05 * levels
    # ... and yet every level is refreshed now and then.
    assert all(
        len({book.bids[k][1] for book in books}) > 1
        and len({book.asks[k][1] for book in books}) > 1
        for k in range(DEPTH)
    )


@pytest.mark.parametrize("key", KEYS)
def test_a_moving_quote_shares_most_levels_from_tick_to_tick(key: str) -> None:
    spec = _spec(key)
    quotes = _walk(spec, 300, seed=2)
    books = [
        synthesize_book(spec, bid, ask, DEPTH, seq, 0) for seq, (bid, ask) in enumerate(quotes)
    ]
    changes = [_changed_levels(a, b) for a, b in itertools.pairwise(books)]
    # A diff carries a (changed) level at most twice: once removed, once added.
    assert statistics.mean(changes) < 0.25 * 2 * DEPTH


def test_a_quote_moving_inside_a_grid_cell_changes_only_the_touch_and_refreshed_levels() -> None:
    spec = KNOWN_SPECS["BTC/USD"]
    step = grid_step(spec) / spec.price_scale
    assert step >= 1.0  # BTC/USD levels are whole dollars apart: room to move inside a cell
    old = synthesize_book(spec, 43000.10, 43004.50, DEPTH, 8, 0)
    new = synthesize_book(spec, 43000.40, 43004.80, DEPTH, 8, 0)
    assert old.bids[1:] == new.bids[1:] and old.asks[1:] == new.asks[1:]
    assert (new.bids[0][0], new.asks[0][0]) == (43000.40, 43004.80)


def test_sizes_grow_with_depth_as_before_on_average() -> None:
    """At the narrowest spread, the mean size at level ``k`` is about
    ``daily_volume / 20 000 × (1 + 0.35 k)``."""
    spec = KNOWN_SPECS["ETH/USD"]
    bid, ask = quote(spec, spec.seed_price, 0.0)
    books = [synthesize_book(spec, bid, ask, DEPTH, seq, 0) for seq in range(0, 40_000, 97)]
    touch = spec.daily_volume / 20_000.0
    means = [statistics.mean(book.bids[k][1] for book in books) for k in range(DEPTH)]
    for k in (0, 1, 5, 20, 50, 99):
        assert means[k] == pytest.approx(touch * (1 + 0.35 * k), rel=0.2)
    assert means[DEPTH - 1] > 10 * means[0]
    for book in books[:20]:
        for side in (book.bids, book.asks):
            assert all(
                0.8 * touch * (1 + 0.35 * k) / 1.3 <= qty <= 1.2 * touch * (1 + 0.35 * k) * 1.3
                for k, (_, qty) in enumerate(side)
            )


def test_a_wider_spread_exposes_larger_sizes_behind_the_touch() -> None:
    spec = KNOWN_SPECS["USDT/USD"]
    calm, busy = quote(spec, 1.0, 0.0), quote(spec, 1.0, 1.0)
    assert busy[0] < calm[0] - 5 * spec.tick_size
    seqs = range(0, 20_000, 101)
    calm_books = [synthesize_book(spec, *calm, DEPTH, seq, 0) for seq in seqs]
    busy_books = [synthesize_book(spec, *busy, DEPTH, seq, 0) for seq in seqs]
    for side in ("bids", "asks"):
        calm_first = statistics.mean(getattr(b, side)[1][1] for b in calm_books)
        busy_first = statistics.mean(getattr(b, side)[1][1] for b in busy_books)
        assert busy_first > 2 * calm_first
        # The levels both books hold are the same levels, with the same sizes.
        shared = (
            dict(getattr(busy_books[0], side)).items() & dict(getattr(calm_books[0], side)).items()
        )
        assert len(shared) > DEPTH // 2


def test_bids_stop_above_zero_for_a_price_near_the_tick() -> None:
    spec = KNOWN_SPECS["DOGE/USD"]
    book = synthesize_book(spec, 0.000005, 0.000007, DEPTH, 1, 0)
    assert 0 < len(book.bids) < DEPTH and book.bids[-1][0] > 0
    assert len(book.asks) == DEPTH


def _tick(spec: SymbolSpec, bid: float, ask: float, volume: float, change: float) -> Tick:
    price = bid if change < 0 else ask
    return Tick(spec.key, 7, price, bid, ask, volume, 5, change, 0.0, price, price, volume)


@pytest.mark.parametrize("side", ["sell", "buy"])
def test_a_print_takes_its_size_out_of_the_touch_it_trades_at(side: str) -> None:
    spec = _spec("BTC/USD")
    bid, ask = quote(spec, spec.seed_price, 0.4)
    plain = synthesize_book(spec, bid, ask, DEPTH, seq=7, ts_ns=5)
    hit, other = ("bids", "asks") if side == "sell" else ("asks", "bids")
    touch = getattr(plain, hit)[0][1]
    change = -1.0 if side == "sell" else 1.0
    part = round(touch / 3, spec.qty_decimals)
    book = book_at(spec, _tick(spec, bid, ask, part, change), DEPTH)
    assert getattr(book, hit)[0] == (getattr(plain, hit)[0][0], pytest.approx(touch - part))
    assert getattr(book, hit)[1:] == getattr(plain, hit)[1:], "only the touch is traded"
    assert getattr(book, other) == getattr(plain, other)
    # A print larger than the queue takes the level: the side starts behind it.
    swept = book_at(spec, _tick(spec, bid, ask, touch * 2, change), DEPTH)
    assert getattr(swept, hit)[: DEPTH - 1] == getattr(plain, hit)[1:]
    assert len(getattr(swept, hit)) == DEPTH
    assert getattr(swept, other) == getattr(plain, other)
    assert swept.bids[0][0] < swept.asks[0][0]
    assert book_at(spec, _tick(spec, bid, ask, touch * 2, change), DEPTH) == swept


def test_a_tick_without_a_print_leaves_the_book_as_drawn() -> None:
    spec = _spec("ETH/USD")
    bid, ask = quote(spec, spec.seed_price, 0.4)
    plain = synthesize_book(spec, bid, ask, DEPTH, seq=7, ts_ns=5)
    assert book_at(spec, _tick(spec, bid, ask, 0.0, -1.0), DEPTH) == plain
