"""One actor per symbol: it owns the price process and publishes ticks to its Topic."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable

import numpy as np
import trio

from mdactors.domain.activity import ActivityClock
from mdactors.domain.guards import STALE_AFTER_S, FeedEdge, PriceBreaker
from mdactors.domain.innovations import MarketFactor
from mdactors.domain.models import SECONDS_PER_YEAR, LiveProcess, PriceModel, ShockStream
from mdactors.domain.overlay import Scenario, SymbolOverlay
from mdactors.domain.quotes import quote, round_price, tick_lots
from mdactors.domain.scenarios import Disruption, FeedMode
from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import Tick, last_trade_id
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

    Three optional guards, each ``None`` (one check per tick) unless in use:
    ``overlay`` bends prices while scenarios run (:meth:`attach`), ``feed``
    delays, drops or withholds ticks at publication (feed disruptions), and
    ``breaker`` halts publication after an extreme move.
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
        self._activity = ActivityClock(model)
        self._sigma = model.volatility / math.sqrt(SECONDS_PER_YEAR)
        self._shocks = ShockStream(volume_rng if volume_rng is not None else rng.spawn(1)[0])
        # Its own stream (spawning draws nothing), so prices and volumes stay as seeded.
        self._arrivals = random.Random(int(rng.spawn(1)[0].integers(2**63)))
        self._trades = 0
        self.volatility_factor = 1.0
        self.spread_factor = 1.0
        self._seq = 0
        # Prices and volumes are kept in integer ticks and lots (see domain.quotes).
        self._last_ticks = round(round_price(spec, self._mid) * spec.price_scale)
        self._day = -1
        self._day_high = self._day_low = self._last_ticks
        self._day_lots = 0
        self.overlay: SymbolOverlay | None = None
        self.feed: FeedEdge | None = None
        self.breaker: PriceBreaker | None = None
        self.steps_done = 0
        self.stepped = trio.lowlevel.ParkingLot()
        """Woken after every step (what a perpetual on this spot ticks on)."""
        self.publish(self._make_tick(self._wall_clock(), 0, 0.0))

    @property
    def mid(self) -> float:
        """The current mid, scenarios applied, whether or not its tick was published."""
        return self._mid

    @property
    def shock(self) -> float:
        """The last step's innovation (in units of the model's volatility)."""
        return self._process.shock

    @property
    def latest(self) -> Tick:
        """The last published tick (there is always one)."""
        tick = self.topic.latest()
        assert tick is not None
        return tick

    def feed_status(self, now_ns: int) -> tuple[str, str]:
        """``(status, reason)`` of this symbol's feed: ``live``, ``halted`` (price
        breaker), ``outage`` or ``stale`` (a feed disruption, or no tick for 30 s)."""
        breaker = self.breaker
        if breaker is not None and breaker.open:
            return "halted", breaker.reason
        feed = self.feed
        if feed is not None and feed.mode in (FeedMode.OUTAGE, FeedMode.STALE):
            return feed.mode.value, "feed disruption"
        if (now_ns - self.latest.ts_ns) / 1e9 > STALE_AFTER_S:
            return "stale", f"no tick for more than {STALE_AFTER_S:g} s"
        return "live", ""

    def seed_day(self, high: float, low: float, volume: float) -> None:
        """Start the current UTC day's statistics from recent history."""
        spec = self.spec
        self._day = self._wall_clock() // _NS_PER_DAY
        self._day_high = max(round(high * spec.price_scale), self._last_ticks)
        self._day_low = min(round(low * spec.price_scale), self._last_ticks)
        self._day_lots = round(volume * spec.qty_scale)

    def resume_from(self, tick: Tick) -> None:
        """Continue after ``tick``, made elsewhere (the previous owner in a cluster).

        The next tick gets sequence ``tick.seq + 1`` and moves from
        ``tick.price`` with ``tick``'s day statistics; the model keeps its own
        volatility state. Publishes nothing.
        """
        spec = self.spec
        self._mid = tick.price
        self._process.state.log_price = math.log(tick.price)
        self._seq = tick.seq
        self._last_ticks = round(tick.price * spec.price_scale)
        self._trades = last_trade_id(tick)
        self._day = tick.ts_ns // _NS_PER_DAY
        self._day_high = round(tick.day_high * spec.price_scale)
        self._day_low = round(tick.day_low * spec.price_scale)
        self._day_lots = round(tick.day_volume * spec.qty_scale)

    def replayed(
        self, price: float, volume: float, bid: float | None = None, ask: float | None = None
    ) -> Tick:
        """The next tick at a recorded ``price`` (``mdactors replay``), unpublished.

        The model follows the replayed price, so it carries on from it if the
        file ends; without a recorded quote the spread model makes one.
        """
        self._mid = price
        self._process.state.log_price = math.log(price)
        tick = self._make_tick(self._wall_clock(), round(volume * self.spec.qty_scale), 0.0)
        if bid is not None and ask is not None:
            tick.bid, tick.ask = bid, ask
        return tick

    def step(self) -> Tick:
        """Advance the process by one interval and return the new tick (unpublished)."""
        process, clock, published = self._process, self._activity, self._mid
        now = self._wall_clock()
        dt_years = self.interval / SECONDS_PER_YEAR
        state = process.state
        before = state.log_price
        season = clock.season(now)
        self._mid = process.advance(dt_years, self.volatility_factor, season)
        move = state.log_price - before
        level = clock.volume_level(move, dt_years)
        lots = tick_lots(self.spec, self.interval, self._shocks.next(), level)
        chance = clock.print_chance
        if chance < 1.0:
            # Trades arrive on the rhythm; a tick that prints carries the volume of
            # those that did not, so the expected volume is unchanged.
            lots = round(lots / chance) if self._arrivals.random() < chance else 0
        overlay = self.overlay
        if overlay is not None:
            lots = round(lots * self._overlaid(overlay, season))
            # Spreads follow the published move, scenarios' moves included.
            move = math.log(self._mid / published)
        return self._make_tick(now, lots, clock.spread_activity(move))

    def _overlaid(self, overlay: SymbolOverlay, season: float) -> float:
        """Apply the scenarios to the new mid; the volume multiplier they ask for.

        Their noise scales with the hour's rhythm, as the model's own moves do.
        """
        overlay.sigma = self._sigma * season
        state = self._process.state
        log_price = overlay.advance(trio.current_time(), state.log_price)
        self._mid = math.exp(log_price)
        if overlay.empty:
            # The last scenario ended: the model resumes from the price just published.
            state.log_price = log_price
            self.overlay = None
        return overlay.volume

    def attach(self, scenario: Scenario, rng: np.random.Generator) -> None:
        """Start applying ``scenario`` to this symbol (``rng`` draws its noise)."""
        now = trio.current_time()
        if isinstance(scenario.shape, Disruption):
            if self.feed is None:
                self.feed = FeedEdge(random.Random(int(rng.integers(2**63))))
                self.feed.last_sent = self.topic.latest()
            self.feed.scenarios.append(scenario)
            return
        if self.overlay is None:
            state = self._process.state
            self.overlay = SymbolOverlay(self.spec.key, state.log_price, self._sigma, rng, now)
        self.overlay.add(scenario, now)

    def _make_tick(self, now_ns: int, lots: int, activity: float) -> Tick:
        spec = self.spec
        scale = spec.price_scale
        ticks = round(self._mid * scale)
        if ticks < 1:
            ticks = 1
        overlay = self.overlay
        spread = self.spread_factor if overlay is None else self.spread_factor * overlay.spread
        bid, ask = quote(spec, self._mid, activity, spread)
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
        if lots:
            self._trades += 1
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
            trades=self._trades,
        )

    def publish(self, tick: Tick) -> None:
        """Hand ``tick`` to every subscriber."""
        self.topic.publish(tick)

    def advance(self) -> None:
        """Step, publish, and wake what is priced from this symbol."""
        self.emit(self.step())
        self.steps_done += 1
        self.stepped.unpark_all()

    def relayed(self, tick: Tick) -> None:
        """Publish ``tick``, simulated elsewhere, as if this actor had stepped to it.

        Its price becomes this actor's mid, so a perpetual simulated here on
        a spot simulated elsewhere follows the relayed spot.
        """
        self.topic.publish(tick)
        self._mid = tick.price
        self.steps_done += 1
        self.stepped.unpark_all()

    def emit(self, tick: Tick) -> None:
        """Publish a fresh ``tick`` through the breaker and any feed disruption."""
        breaker = self.breaker
        if breaker is not None and not breaker.allows(tick.price, tick.ts_ns):
            return
        feed = self.feed
        if feed is None:
            self.topic.publish(tick)
            return
        for item in feed.route(tick, trio.current_time()):
            self.topic.publish(item)
        if feed.idle:
            self.feed = None

    async def _release_until(self, feed: FeedEdge, deadline: float) -> None:
        """Publish delayed ticks as they fall due before ``deadline``."""
        while (due := feed.next_due()) is not None and due < deadline:
            await trio.sleep_until(due)
            for item in feed.release(trio.current_time()):
                self.topic.publish(item)
        if feed.idle and self.feed is feed:
            self.feed = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Publish ticks forever on an absolute cadence."""
        deadline = trio.current_time()
        task_status.started()
        while True:
            deadline += self.interval
            now = trio.current_time()
            if now > deadline + self.interval:
                deadline = now
            if self.feed is not None:
                await self._release_until(self.feed, deadline)
            await trio.sleep_until(deadline)
            self.advance()
