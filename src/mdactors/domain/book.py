"""A synthetic order book around the current quote."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from mdactors.domain.symbols import SymbolSpec

__all__ = ["OrderBook", "synthesize_book"]

Level = tuple[float, float]


@dataclass(frozen=True, slots=True)
class OrderBook:
    """Price levels, best first. ``bids`` descend and ``asks`` ascend."""

    symbol: str
    bids: list[Level]
    asks: list[Level]
    ts_ns: int
    seq: int


def synthesize_book(
    spec: SymbolSpec, bid: float, ask: float, depth: int, seq: int, ts_ns: int
) -> OrderBook:
    """Build ``depth`` levels per side starting at the quote.

    Levels step outwards by about one spread (at least one tick), sizes grow
    with distance from the touch (liquidity rests deeper), and the jitter is
    seeded by ``(symbol, seq)``: the same tick always gives the same book.
    As ``bid < ask`` the book is never crossed.
    """
    rng = random.Random(f"{spec.key}:{seq}")
    tick = spec.tick_size
    step = max(tick, math.ceil((ask - bid) / tick) * tick)
    touch_size = spec.daily_volume / 20_000.0
    bids: list[Level] = []
    asks: list[Level] = []
    for level in range(depth):
        growth = 1.0 + 0.35 * level
        bid_price = round(bid - level * step, spec.price_decimals)
        if bid_price >= tick:
            bid_size = touch_size * growth * rng.uniform(0.8, 1.2)
            bids.append((bid_price, max(round(bid_size, spec.qty_decimals), spec.lot_size)))
        ask_size = touch_size * growth * rng.uniform(0.8, 1.2)
        asks.append(
            (
                round(ask + level * step, spec.price_decimals),
                max(round(ask_size, spec.qty_decimals), spec.lot_size),
            )
        )
    return OrderBook(spec.key, bids, asks, ts_ns, seq)
