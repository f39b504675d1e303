"""Rows of the ``market_data`` tables, made from ticks, candles and specs (pure, no I/O).

Prices and quantities leave as :class:`~decimal.Decimal` built from the
symbol's integer grid (``ticks / 10**price_decimals``, ``lots /
10**qty_decimals``), so the ``numeric`` columns hold exactly the price a
client was sent, never a float's binary expansion. A tick's own fields that
have no column (sequence, tick volume, day figures, the ns timestamp) travel
in ``metadata``, so a history query answered from ``price_feeds`` returns the
same ticks the live feed published.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from mdactors.domain.candles import Candle
from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import Tick

__all__ = [
    "CANDLE_COLUMNS",
    "PRICE_FEED_COLUMNS",
    "SNAPSHOT_COLUMNS",
    "SYMBOL_COLUMNS",
    "Sampler",
    "candle_from_row",
    "candle_row",
    "grid",
    "price_feed_row",
    "snapshot_row",
    "symbol_row",
    "tick_from_row",
]

PRICE_FEED_COLUMNS = (
    "symbol", "price", "bid", "ask", "volume_24h", "source", "timestamp", "metadata",
)  # fmt: skip
CANDLE_COLUMNS = (
    "symbol", "interval", "open", "high", "low", "close", "volume", "start_time", "end_time",
    "num_trades", "metadata",
)  # fmt: skip
SNAPSHOT_COLUMNS = (
    "symbol", "last_price", "bid", "ask", "spread", "volume_24h", "price_change_24h",
    "price_change_percent_24h", "timestamp", "metadata",
)  # fmt: skip
SYMBOL_COLUMNS = (
    "symbol", "base_currency", "quote_currency", "display_name", "is_active",
    "min_price_movement", "min_order_size", "max_order_size", "metadata",
)  # fmt: skip

_PERCENT = Decimal("0.00000001")
_MAX_ORDER_SHARE = 0.01
"""The largest order the catalogue states: 1 % of the symbol's simulated daily volume."""


def grid(value: float, decimals: int) -> Decimal:
    """``value`` on a grid of ``10**-decimals``, exactly (``43000.12`` → ``Decimal("43000.12")``).

    The float is a grid price already (``ticks / 10**decimals``): rounding
    recovers the integer ticks, and the decimal is built from them."""
    return Decimal(round(value * 10**decimals)).scaleb(-decimals)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _at(ns: int) -> datetime:
    """The timestamptz of ``ns`` (PostgreSQL keeps µs; the exact ns travel in metadata)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def price_feed_row(tick: Tick, spec: SymbolSpec, volume_24h: float, source: str) -> tuple:
    """The ``price_feeds`` row of a sampled ``tick`` (in :data:`PRICE_FEED_COLUMNS` order)."""
    p, q = spec.price_decimals, spec.qty_decimals
    metadata = {
        "seq": tick.seq,
        "ts_ns": tick.ts_ns,
        "volume": tick.volume,
        "change": tick.change,
        "change_pct": tick.change_pct,
        "day_high": tick.day_high,
        "day_low": tick.day_low,
        "day_volume": tick.day_volume,
    }
    return (
        tick.symbol,
        grid(tick.price, p),
        grid(tick.bid, p),
        grid(tick.ask, p),
        grid(volume_24h, q),
        source,
        _at(tick.ts_ns),
        _json(metadata),
    )


def tick_from_row(symbol: str, price: Decimal, bid: Decimal, ask: Decimal, meta: dict) -> Tick:
    """The tick a ``price_feeds`` row was written from."""
    return Tick(
        symbol,
        int(meta["seq"]),
        float(price),
        float(bid),
        float(ask),
        float(meta["volume"]),
        int(meta["ts_ns"]),
        float(meta["change"]),
        float(meta["change_pct"]),
        float(meta["day_high"]),
        float(meta["day_low"]),
        float(meta["day_volume"]),
    )


def candle_row(candle: Candle, spec: SymbolSpec) -> tuple:
    """The ``candles`` row of a closed candle (values in :data:`CANDLE_COLUMNS` order)."""
    p = spec.price_decimals
    return (
        candle.symbol,
        candle.interval,
        grid(candle.open, p),
        grid(candle.high, p),
        grid(candle.low, p),
        grid(candle.close, p),
        grid(candle.volume, spec.qty_decimals),
        _at(candle.start_ms * 1_000_000),
        _at(candle.end_ms * 1_000_000),
        candle.trades,
        "{}",
    )


def candle_from_row(
    symbol: str,
    interval: str,
    start: datetime,
    values: tuple[Decimal, Decimal, Decimal, Decimal, Decimal],
    trades: int,
) -> Candle:
    """The closed candle a ``candles`` row holds (``values`` = open, high, low, close, volume)."""
    o, h, low, c, volume = (float(v) for v in values)
    start_ms = (start - _EPOCH) // timedelta(milliseconds=1)
    return Candle(symbol, interval, start_ms, o, h, low, c, volume, trades, True)


def snapshot_row(
    tick: Tick, spec: SymbolSpec, volume_24h: float, change_24h: float, change_pct_24h: float
) -> tuple:
    """A ``market_snapshots`` row: ``tick`` and the 24 h figures at its time."""
    p = spec.price_decimals
    bid, ask = grid(tick.bid, p), grid(tick.ask, p)
    return (
        tick.symbol,
        grid(tick.price, p),
        bid,
        ask,
        ask - bid,
        grid(volume_24h, spec.qty_decimals),
        grid(change_24h, p),
        Decimal(change_pct_24h).quantize(_PERCENT),
        _at(tick.ts_ns),
        _json({"seq": tick.seq}),
    )


def symbol_row(spec: SymbolSpec, active: bool) -> tuple:
    """The catalogue row of a symbol (values in :data:`SYMBOL_COLUMNS` order)."""
    q = spec.qty_decimals
    kind = "perpetual" if spec.perpetual else "spot"
    return (
        spec.key,
        spec.base,
        spec.quote,
        f"{spec.base}/{spec.quote}{' perpetual' if spec.perpetual else ''}",
        active,
        Decimal(1).scaleb(-spec.price_decimals),
        Decimal(1).scaleb(-q),
        grid(spec.daily_volume * _MAX_ORDER_SHARE, q),
        _json({"kind": kind, "price_decimals": spec.price_decimals, "qty_decimals": q}),
    )


class Sampler:
    """Picks the ticks that become ``price_feeds`` rows: per symbol, the first tick at
    least ``interval`` seconds after the last one picked (``0`` = every tick)."""

    __slots__ = ("_interval_ns", "_last_ns")

    def __init__(self, interval: float) -> None:
        self._interval_ns = int(interval * 1e9)
        self._last_ns: dict[str, int] = {}

    def pick(self, ticks: list[Tick]) -> list[Tick]:
        """The ticks of ``ticks`` (one symbol, oldest first) that are due."""
        if not ticks:
            return []
        if self._interval_ns <= 0:
            return ticks
        symbol = ticks[0].symbol
        last = self._last_ns.get(symbol)
        picked = []
        for tick in ticks:
            if last is None or tick.ts_ns - last >= self._interval_ns:
                picked.append(tick)
                last = tick.ts_ns
        if last is not None:
            self._last_ns[symbol] = last
        return picked
