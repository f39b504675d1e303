"""One actor per symbol: it owns the price process and publishes ticks to its Topic."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import trio

from mdactors.domain.innovations import MarketFactor
from mdactors.domain.models import SECONDS_PER_YEAR, LiveProcess, PriceModel, ShockStream
from mdactors.domain.quotes import quote, round_price, tick_lots
from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import Tick
from mdactors.engine.topic import Topic

__all__ = ["SymbolActor"]

_NS_PER_DAY = 86_400 * 1_000_000_000


class SymbolActor:
    """Owns one symbol's state: price, quote, sequence and UTC-day statistics.

    :meth:`run` publishes a tick every ``interval`` seconds on an absolute
    cadence (deadlines are ``start + k × interval``, so there is no drift);
    if the process stalls for more than an interval, missed ticks are skipped
    rather than burst out. ``interval`` may be changed while running and
    takes effect from the next tick.
    """

    def __init__(
        self,
        spec: SymbolSpec,
        model: PriceModel,
        interval: float,
        rng: np.random.Generator,
        *,
        factor: MarketFactor | None = None,
        volume_rng: np.random.Generator | None = None,
        start_price: float | None = None,
        wall_clock: Callable[[], int] = time.time_ns,
        topic_capacity: int = 256,
    ) -> None:
        self.spec = spec
        self.model = model
        self.interval = interval
        self.topic: Topic[Tick] = Topic(spec.key, topic_capacity)
        self._wall_clock = wall_clock
        self._mid = start_price if start_price is not None else spec.seed_price
        self._process = LiveProcess(model, self._mid, rng, factor)
        self._shocks = ShockStream(volume_rng if volume_rng is not None else rng.spawn(1)[0])
        self.volatility_factor = 1.0
        self.spread_factor = 1.0
        self._seq = 0
        # Prices and volumes are kept in integer ticks and lots (see domain.quotes).
        self._last_ticks = round(round_price(spec, self._mid) * spec.price_scale)
        self._day = -1
        self._day_high = self._day_low = self._last_ticks
        self._day_lots = 0
        self.publish(self._make_tick(self._wall_clock(), 0, 0.0))

    @property
    def latest(self) -> Tick:
        """The last published tick (there is always one)."""
        tick = self.topic.latest()
        assert tick is not None
        return tick

    def seed_day(self, high: float, low: float, volume: float) -> None:
        """Start the current UTC day's statistics from recent history."""
        spec = self.spec
        self._day = self._wall_clock() // _NS_PER_DAY
        self._day_high = max(round(high * spec.price_scale), self._last_ticks)
        self._day_low = min(round(low * spec.price_scale), self._last_ticks)
        self._day_lots = round(volume * spec.qty_scale)

    def step(self) -> Tick:
        """Advance the process by one interval and return the new tick (unpublished)."""
        process = self._process
        self._mid = process.advance(self.interval / SECONDS_PER_YEAR, self.volatility_factor)
        lots = tick_lots(self.spec, self.interval, self._shocks.next())
        return self._make_tick(self._wall_clock(), lots, abs(process.shock) / 3.0)

    def _make_tick(self, now_ns: int, lots: int, activity: float) -> Tick:
        spec = self.spec
        scale = spec.price_scale
        ticks = round(self._mid * scale)
        if ticks < 1:
            ticks = 1
        bid, ask = quote(spec, self._mid, activity, self.spread_factor)
        day = now_ns // _NS_PER_DAY
        if day != self._day:
            self._day = day
            self._day_high = self._day_low = ticks
            self._day_lots = 0
        if ticks > self._day_high:
            self._day_high = ticks
        elif ticks < self._day_low:
            self._day_low = ticks
        self._day_lots += lots
        previous = self._last_ticks
        self._last_ticks = ticks
        self._seq += 1
        qty_scale = spec.qty_scale
        return Tick(
            spec.key,
            self._seq,
            ticks / scale,
            bid,
            ask,
            lots / qty_scale,
            now_ns,
            (ticks - previous) / scale,
            (ticks - previous) / previous * 100.0,
            self._day_high / scale,
            self._day_low / scale,
            self._day_lots / qty_scale,
        )

    def publish(self, tick: Tick) -> None:
        """Hand ``tick`` to every subscriber."""
        self.topic.publish(tick)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish ticks forever on an absolute cadence."""
        deadline = trio.current_time()
        task_status.started()
        while True:
            deadline += self.interval
            now = trio.current_time()
            if now > deadline + self.interval:
                deadline = now
            await trio.sleep_until(deadline)
            self.publish(self.step())
