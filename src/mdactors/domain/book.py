"""A synthetic order book around the current quote that evolves level by level.

The book of a tick is a pure function of ``(symbol, bid, ask, seq)``, yet two
consecutive books share almost all their levels, as a real exchange's do, so a
depth diff stream carries only what changed:

- The best level of each side is the quote itself. Behind it, level prices lie
  on a fixed grid of the symbol (multiples of :func:`grid_step` ticks), so a
  quote that moves inside a grid cell changes no level behind the touch, and
  one that crosses a grid line adds levels at the top and drops them at the
  far end.
- A level's size depends on its price, its depth *bucket* and a refresh epoch.
  Depth is counted from where the touch would be at the symbol's narrowest
  spread around the mid, so a spread that widens or narrows only exposes or
  hides levels. Depth buckets widen with depth (about 25% more size from one
  bucket to the next), so when the mid crosses a grid line and every level
  moves one step deeper, only the levels that cross a bucket edge change
  size. The epoch of a level advances every ``period`` ticks, ``period``
  growing with depth and the phase staggered by grid index: the touch
  changes on every tick, deep levels rarely, a handful a side per tick in all.
- The tick's own print comes out of the touch it trades at (:func:`book_at`):
  a sell lowers the bid's size, a buy the ask's, and a print at least as large
  as the queue removes the level, so the side starts at the next price behind
  it. The touch queue is drawn afresh at the next tick (it refills).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache

from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import Tick, trade_of

__all__ = ["OrderBook", "book_at", "grid_step", "synthesize_book"]

Level = tuple[float, float]

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_ODD = 0xD1B54A32D192ED03
_ASK_SALT = 0x6A09E667F3BCC909
_JITTER = 0.4 * 2.0**-53
"""A 53-bit hash times this is uniform in [0, 0.4): sizes jitter by ±20%."""
_GROWTH_PER_LEVEL = 0.35
"""Mean size at level ``k`` (0 = touch) is ``touch × (1 + 0.35 k)``."""
_BUCKET_RATIO = 1.25
"""Largest growth ratio between the first and last level of a depth bucket."""


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Price levels, best first. ``bids`` descend and ``asks`` ascend."""

    symbol: str
    bids: list[Level]
    asks: list[Level]
    ts_ns: int
    seq: int


@lru_cache(maxsize=1024)
def grid_step(spec: SymbolSpec) -> int:
    """Ticks between book levels behind the touch: about the symbol's narrowest
    spread at its seed price, rounded to 1, 2 or 5 × a power of ten (at least one
    tick). Fixed per symbol, so level prices persist while the quote moves."""
    narrow = spec.spread_bps[0]
    ticks = spec.seed_price * narrow / 10_000.0 * spec.price_scale
    if ticks <= 1.0:
        return 1
    exponent = math.floor(math.log10(ticks))
    candidates = [m * 10**e for e in (exponent, exponent + 1) for m in (1, 2, 5)]
    return min(candidates, key=lambda c: abs(math.log(c / ticks)))


@lru_cache(maxsize=1024)
def _symbol_hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def _build_levels(depth: int) -> list[tuple[int, float, int]]:
    """Per depth ``k`` (0 = touch), at least ``depth`` of them: (bucket, mean size
    growth of the bucket, refresh period in ticks)."""
    table: list[tuple[int, float, int]] = []
    while len(table) < depth:
        start = len(table)
        # Last level whose growth is within _BUCKET_RATIO of the bucket's first.
        growth = 1.0 + _GROWTH_PER_LEVEL * start
        end = max(start, math.floor((_BUCKET_RATIO * growth - 1.0) / _GROWTH_PER_LEVEL))
        bucket = table[-1][0] + 1 if table else 0
        mean_growth = 1.0 + _GROWTH_PER_LEVEL * (start + end) / 2.0
        period = 1 + 2 * start
        table.extend((bucket, mean_growth, period) for _ in range(end - start + 1))
    return table


_levels = _build_levels(6000)  # BINANCE_BOOK_DEPTH is at most 5000


def _level_table(depth: int) -> list[tuple[int, float, int]]:
    """The level table, at least ``depth`` long (replaced whole, never mutated)."""
    global _levels
    if len(_levels) < depth:
        _levels = _build_levels(depth)
    return _levels


def book_at(spec: SymbolSpec, tick: Tick, depth: int) -> OrderBook:
    """The book after ``tick``: :func:`synthesize_book` at its quote, its print
    (:func:`~mdactors.domain.tick.trade_of`) taken out of the touch it traded at."""
    trade = trade_of(tick)
    sold = trade.quantity if trade is not None and trade.side == "sell" else 0.0
    bought = trade.quantity if trade is not None and trade.side == "buy" else 0.0
    return synthesize_book(spec, tick.bid, tick.ask, depth, tick.seq, tick.ts_ns, sold, bought)


def synthesize_book(
    spec: SymbolSpec,
    bid: float,
    ask: float,
    depth: int,
    seq: int,
    ts_ns: int,
    sold: float = 0.0,
    bought: float = 0.0,
) -> OrderBook:
    """Build ``depth`` levels per side starting at the quote.

    Level 0 of each side is the quote; levels 1… lie on the symbol's price
    grid (:func:`grid_step`) beyond it, so as ``bid < ask`` the book is never
    crossed. Sizes grow with depth, in buckets, with ±20% jitter: the mean at
    level ``k`` is ``touch × (1 + 0.35 k)`` with ``k`` counted from where the
    touch would be at the symbol's narrowest spread, so a spread that widens
    exposes the larger sizes resting deeper instead of reshuffling the book.
    A level keeps its size until its refresh epoch turns or it crosses a depth
    bucket (see the module doc). Same inputs, same book, and a shallower book
    is a prefix of a deeper one. Bids stop above zero, so that side may hold
    fewer than ``depth`` levels. ``sold`` traded at the bid and ``bought`` at
    the ask: each comes out of its touch's size, and a touch left with less
    than one lot is removed (the side then starts one grid level behind it).
    """
    scale = spec.price_scale
    step = grid_step(spec)
    touch_lots = spec.daily_volume / 20_000.0 * spec.qty_scale
    symbol = _symbol_hash(spec.key)
    bid_ticks = round(bid * scale)
    ask_ticks = round(ask * scale)
    # Where the touch would be at the narrowest spread, in grid steps.
    mid = (bid_ticks + ask_ticks) / 2.0
    half = mid * spec.spread_bps[0] / 20_000.0
    calm_bid = math.floor((mid - half) / step)
    calm_ask = math.ceil((mid + half) / step)
    top_bid = (bid_ticks - 1) // step  # grid index of the first level behind the bid
    top_ask = ask_ticks // step + 1  # grid index of the first level behind the ask
    bid_offset = calm_bid - top_bid
    ask_offset = top_ask - calm_ask
    table = _level_table(depth + max(bid_offset, ask_offset, 0))
    sides = (
        (symbol, bid_ticks, top_bid, -1, bid_offset, round(sold * spec.qty_scale)),
        (symbol + _ASK_SALT, ask_ticks, top_ask, 1, ask_offset, round(bought * spec.qty_scale)),
    )
    bids, asks = (_side(spec, table, touch_lots, seq, depth, *side) for side in sides)
    return OrderBook(spec.key, bids, asks, ts_ns, seq)


def _side(
    spec: SymbolSpec,
    table: list[tuple[int, float, int]],
    touch_lots: float,
    seq: int,
    depth: int,
    salt: int,
    touch: int,
    top: int,
    direction: int,
    offset: int,
    taken: int,
) -> list[Level]:
    """One side: the touch at ``touch`` ticks less ``taken`` lots (gone when fewer
    than one is left), then grid indexes ``top``, ``top ± 1``… (``direction``),
    level ``k`` sized as depth ``k + offset`` (at least 1)."""
    scale, qty_scale, step = spec.price_scale, spec.qty_scale, grid_step(spec)
    mask = _MASK
    levels: list[Level] = []
    for k in range(depth + 1):
        if len(levels) == depth:
            break
        if k == 0:
            index = price = touch
            bucket, growth, period = table[0]
        else:
            index = top + direction * (k - 1)
            price = index * step
            if price < 1:
                break
            bucket, growth, period = table[k + offset if k + offset > 1 else 1]
        # A level's epoch turns every ``period`` ticks, its phase set by its index;
        # its jitter is SplitMix64's finaliser of (symbol, side, bucket, index, epoch).
        x = (salt + (bucket << 48) + index * _GOLDEN + (seq + index) // period * _ODD) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        lots = round(touch_lots * growth * (0.8 + ((x ^ (x >> 31)) >> 11) * _JITTER))
        if k == 0 and taken:
            lots = max(lots, 1) - taken
            if lots < 1:
                continue
        levels.append((price / scale, (lots if lots > 1 else 1) / qty_scale))
    return levels
