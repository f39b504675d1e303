"""Rows of the ``market_data`` tables, made from ticks, candles and specs (pure, no I/O).

Prices and quantities leave as exact decimal text built from the
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

_MAX_ORDER_SHARE = 0.01
"""The largest order the catalogue states: 1 % of the symbol's simulated daily volume."""


def grid(value: float, decimals: int) -> str:
    """``value`` on a grid of ``10**-decimals`` as exact decimal text (``43000.12`` →
    ``"43000.12"``), for a ``numeric`` column.

    The float is a grid price already (``ticks / 10**decimals``): rounding
    recovers the integer ticks, and the text is written from them, digit by
    digit, so no binary expansion reaches the database."""
    units = round(value * 10**decimals)
    if decimals == 0:
        return str(units)
    sign = "-" if units < 0 else ""
    whole, part = divmod(abs(units), 10**decimals)
    return f"{sign}{whole}.{part:0{decimals}d}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _at(ns: int) -> datetime:
    """The timestamptz of ``ns`` (PostgreSQL keeps µs; the exact ns travel in metadata)."""
    return _EPOCH + timedelta(microseconds=ns // 1_000)


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"))


def _tick_metadata(t: Tick) -> str:
    # Formatted directly (float repr is valid JSON for a tick's finite numbers): it runs
    # per sampled tick, and json.dumps costs several times as much.
    return (
        f'{{"seq":{t.seq},"ts_ns":{t.ts_ns},"volume":{t.volume!r},"change":{t.change!r},'
        f'"change_pct":{t.change_pct!r},"day_high":{t.day_high!r},"day_low":{t.day_low!r},'
        f'"day_volume":{t.day_volume!r},"trades":{t.trades}}}'
    )


def price_feed_row(tick: Tick, spec: SymbolSpec, volume_24h: float, source: str) -> tuple:
    """The ``price_feeds`` row of a sampled ``tick`` (in :data:`PRICE_FEED_COLUMNS` order)."""
    p, q = spec.price_decimals, spec.qty_decimals
    return (
        tick.symbol,
        grid(tick.price, p),
        grid(tick.bid, p),
        grid(tick.ask, p),
        grid(volume_24h, q),
        source,
        _at(tick.ts_ns),
        _tick_metadata(tick),
    )


def _number(meta: dict[str, Any], name: str, default: float = 0.0) -> float:
    value = meta.get(name, default)
    return float(value) if isinstance(value, int | float) else default


def tick_from_row(
    symbol: str,
    price: Decimal,
    bid: Decimal | None,
    ask: Decimal | None,
    at: datetime,
    meta: Any,
) -> Tick:
    """The tick a ``price_feeds`` row was written from.

    A row another writer made (no tick fields in ``metadata``, no bid/ask) still
    reads: its missing fields are the price, zero, or the row's timestamp.
    """
    meta = meta if isinstance(meta, dict) else {}
    mid = float(price)
    ts_ns = meta.get("ts_ns")
    if not isinstance(ts_ns, int):
        ts_ns = (at - _EPOCH) // timedelta(microseconds=1) * 1_000
    return Tick(
        symbol,
        int(_number(meta, "seq")),
        mid,
        float(bid) if bid is not None else mid,
        float(ask) if ask is not None else mid,
        _number(meta, "volume"),
        ts_ns,
        _number(meta, "change"),
        _number(meta, "change_pct"),
        _number(meta, "day_high", mid),
        _number(meta, "day_low", mid),
        _number(meta, "day_volume"),
        trades=int(_number(meta, "trades", -1)),
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
    values: tuple[Decimal, Decimal, Decimal, Decimal, Decimal | None],
    trades: int | None,
) -> Candle:
    """The closed candle a ``candles`` row holds (``values`` = open, high, low, close, volume;
    a volume or trade count another writer left NULL reads as 0)."""
    o, h, low, c = (float(v) for v in values[:4])
    volume = float(values[4]) if values[4] is not None else 0.0
    start_ms = (start - _EPOCH) // timedelta(milliseconds=1)
    return Candle(symbol, interval, start_ms, o, h, low, c, volume, trades or 0, True)


def snapshot_row(
    tick: Tick, spec: SymbolSpec, volume_24h: float, change_24h: float, change_pct_24h: float
) -> tuple:
    """A ``market_snapshots`` row: ``tick`` and the 24 h figures at its time."""
    p = spec.price_decimals
    return (
        tick.symbol,
        grid(tick.price, p),
        grid(tick.bid, p),
        grid(tick.ask, p),
        grid(tick.ask - tick.bid, p),
        grid(volume_24h, spec.qty_decimals),
        grid(change_24h, p),
        grid(change_pct_24h, 8),
        _at(tick.ts_ns),
        f'{{"seq":{tick.seq}}}',
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
        grid(spec.tick_size, spec.price_decimals),
        grid(spec.lot_size, q),
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
