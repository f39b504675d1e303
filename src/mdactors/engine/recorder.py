"""Follows every symbol's Topic: builds candles, keeps the tape and 24h window, feeds history.

At start-up it makes the history before the first tick (:meth:`Recorder.backfill`).

The recorder is an ordinary Topic reader, so it can never slow an actor. It
closes candles on a wall-clock timer at each minute boundary (every interval
here is a whole number of minutes), so a candle closes on time even when no
tick arrives.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace

import trio

from mdactors.adapters.history import HistoryStore
from mdactors.domain.backfill import minute_history
from mdactors.domain.bars import Bars, concat_bars, grid_bars
from mdactors.domain.candle_columns import CandleColumns, aggregate, minute_columns
from mdactors.domain.candles import INTERVALS, Candle, CandleSeries
from mdactors.domain.stats import RollingStats, rolling_stats
from mdactors.domain.tick import Tick, Trade, trade_of
from mdactors.domain.trade_backfill import (
    PRESTART_MINUTES,
    PRESTART_PER_MINUTE,
    TRADE_ID_BASE,
    backfill_trades,
)
from mdactors.engine.market import Market
from mdactors.engine.symbol_actor import SymbolActor

__all__ = ["Recorder"]

_DAY_MINUTES = 1_440
_MINUTE_MS = 60_000
_DAY_MS = _DAY_MINUTES * _MINUTE_MS
_SUBSTEPS = 6
"""Model steps per backfilled minute (their count is each minute's ``trades``)."""


def _usable(candle: Candle) -> bool:
    """Whether a stored candle can anchor the backfill (closed, prices finite and positive)."""
    prices = (candle.open, candle.high, candle.low, candle.close)
    return candle.closed and all(math.isfinite(p) and p > 0 for p in prices)


class Recorder:
    """Candles, recent trades and rolling 24h statistics for every symbol."""

    def __init__(self, market: Market, history: HistoryStore, trade_capacity: int = 1_000) -> None:
        self.market = market
        self.history = history
        self.series: dict[str, dict[str, CandleSeries]] = {
            key: {name: CandleSeries(key, name) for name in INTERVALS} for key in market.symbols
        }
        self.trades: dict[str, deque[Trade]] = {
            key: deque(maxlen=trade_capacity) for key in market.symbols
        }
        self._day: dict[str, deque[Candle]] = {
            key: deque(maxlen=_DAY_MINUTES) for key in market.symbols
        }
        self._day_stats: dict[str, RollingStats] = {}
        self.deep: dict[str, dict[str, CandleColumns]] = {key: {} for key in market.symbols}
        """Per symbol and interval, the closed candles made at start-up (:meth:`backfill`)."""
        self.observed_seq: dict[str, int] = {}
        """Per symbol, the sequence of the last tick folded into candles and the tape."""
        self.missed_ticks = 0

    def _now_ms(self) -> int:
        return self.market.wall_clock() // 1_000_000

    def backfill(
        self,
        days: int = 1,
        *,
        minutes: int | None = None,
        stored: Mapping[str, Sequence[Candle]] | None = None,
    ) -> None:
        """One-minute history ending at each symbol's live price: from 00:00 UTC
        ``days`` days before today (so every interval's oldest candle is whole), or
        exactly the last ``minutes``.

        ``stored``: per symbol, the closed one-minute candles an earlier run left
        in the history store (oldest first). The history is then those candles
        where they are, the model's path ending at the oldest one's open before
        them, and a path bridging the newest one's close to the live price after
        them: one continuous series, no jump where the stored part meets the
        made one.

        Every interval is aggregated from the minutes with array reductions and
        kept as columns (:meth:`deep_candles`); only the candles reaching into
        the last 24 h go through the history store as candle objects, as a live
        day would (what Redis and PostgreSQL persist is as before). Each series' forming candle
        is the bucket the history ends in.
        """
        now_ms = self._now_ms()
        end_ms = now_ms - now_ms % _MINUTE_MS
        if minutes is None:
            minutes = days * _DAY_MINUTES + end_ms % _DAY_MS // _MINUTE_MS
        if minutes <= 0:
            return
        for key, actor in self.market.actors.items():
            spec = actor.spec
            held = (stored or {}).get(key, ())
            bars = self._minutes(actor, end_ms, minutes, held)
            ones = minute_columns(key, bars, spec.price_decimals, spec.qty_decimals, _SUBSTEPS)
            for name, series in self.series[key].items():
                closed, forming = aggregate(ones, name)
                self.deep[key][name] = closed
                # Those reaching into the last 24 h, as a day of live candles would.
                recent = closed.between(end_ms - _DAY_MS - closed.step_ms + 1, end_ms, len(closed))
                if recent:
                    self._store_closed(key, recent)
                if forming is None:
                    price = float(closed.close[-1])
                    forming = Candle(key, name, end_ms, price, price, price, price, 0.0)
                # The live price is where the forming candle is now (an earlier run's
                # stored minutes may end before its last tick did).
                live = actor.latest.price
                series.current = replace(
                    forming, high=max(forming.high, live), low=min(forming.low, live), close=live
                )
            self._seed_day(actor, end_ms)
            self._backfill_tape(actor)

    def _minutes(
        self, actor: SymbolActor, end_ms: int, minutes: int, stored: Sequence[Candle]
    ) -> Bars:
        """The backfill's ``minutes`` bars before ``end_ms``, around ``stored`` ones."""
        key, spec, model = actor.spec.key, actor.spec, actor.model
        rng = self.market.rng(key, "backfill")
        start_ms = end_ms - minutes * _MINUTE_MS
        held = [c for c in stored if start_ms <= c.start_ms < end_ms and _usable(c)]
        if not held:
            factor = self.market.factor("backfill")
            return minute_history(
                spec, model, actor.latest.price, end_ms, minutes, rng, _SUBSTEPS, factor=factor
            )
        first, last = held[0].start_ms, held[-1].start_ms
        parts = []
        if before := (first - start_ms) // _MINUTE_MS:
            factor = self.market.factor("backfill")
            parts.append(
                minute_history(
                    spec, model, held[0].open, first, before, rng, _SUBSTEPS, factor=factor
                )
            )
        count = (last - first) // _MINUTE_MS + 1
        parts.append(grid_bars(held, first * 1_000_000, _MINUTE_MS * 1_000_000, count))
        if after := (end_ms - last) // _MINUTE_MS - 1:
            parts.append(
                minute_history(
                    spec,
                    model,
                    actor.latest.price,
                    end_ms,
                    after,
                    rng,
                    _SUBSTEPS,
                    factor=self.market.factor("backfill-gap"),
                    start_price=held[-1].close,
                )
            )
        return concat_bars(parts)

    def deep_candles(
        self, key: str, interval: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Candle]:
        """The most recent ``limit`` backfilled candles opening in ``[start_ms, end_ms]``."""
        columns = self.deep[key].get(interval)
        return columns.between(start_ms, end_ms, limit) if columns is not None else []

    @property
    def backfill_bytes(self) -> int:
        """Bytes held by the backfilled columns of every symbol and interval."""
        return sum(c.nbytes for by_interval in self.deep.values() for c in by_interval.values())

    def _backfill_tape(self, actor: SymbolActor) -> None:
        """Prints for the last minutes before start-up, so the tape is full from the
        first request; their ids are ``<= 0`` (see ``trade_backfill.TRADE_ID_BASE``)."""
        key = actor.spec.key
        minutes = list(self._day[key])[-PRESTART_MINUTES:]
        prints = backfill_trades(
            actor.spec, minutes, PRESTART_PER_MINUTE, self.market.rng(key, "binance-trades")
        )[:TRADE_ID_BASE]
        self.trades[key].extend(replace(t, id=t.id - TRADE_ID_BASE) for t in prints)

    def _seed_day(self, actor: SymbolActor, now_ms: int) -> None:
        midnight = now_ms - now_ms % (86_400 * 1000)
        today = [c for c in self._day[actor.spec.key] if c.start_ms >= midnight]
        if today:
            actor.seed_day(
                max(c.high for c in today), min(c.low for c in today), sum(c.volume for c in today)
            )

    def _fold(self, key: str, ts_ms: int, bar: Candle | Tick, trades: int) -> None:
        if isinstance(bar, Tick):
            o = h = low = c = bar.price
            volume = bar.volume
        else:
            o, h, low, c, volume = bar.open, bar.high, bar.low, bar.close, bar.volume
        for series in self.series[key].values():
            closed = series.update(ts_ms, o, h, low, c, volume, trades)
            if closed:
                self._store_closed(key, closed)

    def _close(self, key: str, now_ms: int) -> None:
        for series in self.series[key].values():
            closed = series.close_until(now_ms)
            if closed:
                self._store_closed(key, closed)

    def _store_closed(self, key: str, closed: list[Candle]) -> None:
        self.history.record_candles(closed)
        if closed[0].interval == "1m":
            self._day[key].extend(closed)
            self._day_stats.pop(key, None)

    def observe(self, ticks: list[Tick]) -> None:
        """Fold a batch of one symbol's ticks into candles, the tape and history."""
        if not ticks:
            return
        key = ticks[0].symbol
        tape = self.trades[key]
        for tick in ticks:
            trade = trade_of(tick)
            self._fold(key, tick.ts_ms, tick, 0 if trade is None else 1)
            if trade is not None:
                tape.append(trade)
        self.observed_seq[key] = ticks[-1].seq
        self.history.record_ticks(ticks)

    def open_candle(self, key: str, interval: str) -> Candle | None:
        """The candle still forming for ``key`` at ``interval``."""
        return self.series[key][interval].current

    def stats_24h(self, key: str) -> RollingStats:
        """Rolling 24h statistics up to the latest tick."""
        tick = self.market.latest(key)
        base = self._day_stats.get(key)
        if base is None:
            # Recomputed at most once per closed minute: the window changes only then.
            window = self._day[key]
            last = window[-1] if window else None
            base = self._day_stats[key] = rolling_stats(
                window,
                last.close if last else tick.price,
                last.end_ms if last else tick.ts_ms,
            )
        return base.extended(self.open_candle(key, "1m"), tick.price, tick.ts_ms)

    def recent_trades(self, key: str, limit: int) -> list[Trade]:
        """The newest ``limit`` trades of ``key``, newest first."""
        tape = self.trades[key]
        return [tape[-1 - index] for index in range(min(limit, len(tape)))]

    def day_closes(self, key: str, minutes: int) -> list[float]:
        """Closes of the last ``minutes`` one-minute candles (closed, then the open one)."""
        closes = [candle.close for candle in list(self._day[key])[-minutes:]]
        current = self.open_candle(key, "1m")
        if current is not None:
            closes.append(current.close)
        return closes

    async def _follow(self, actor: SymbolActor) -> None:
        reader = actor.topic.reader(from_latest=True)
        while True:
            ticks, gap = await reader.next_batch(actor.topic.capacity)
            self.missed_ticks += gap
            self.observe(ticks)

    async def _close_on_time(self) -> None:
        while True:
            now_ms = self._now_ms()
            await trio.sleep((_MINUTE_MS - now_ms % _MINUTE_MS) / 1000)
            now_ms = self._now_ms()
            for key in self.series:
                self._close(key, now_ms)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow every actor and close candles on time, until cancelled."""
        async with trio.open_nursery() as nursery:
            for actor in self.market.actors.values():
                nursery.start_soon(self._follow, actor)
            nursery.start_soon(self._close_on_time)
            task_status.started()
