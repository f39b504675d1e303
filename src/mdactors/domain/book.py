"""A synthetic order book whose queues persist from tick to tick.

Every price on the symbol's tick grid holds a queue on each side; the book of
a tick shows the queues at its quote (the touch) and at the grid levels behind
it (multiples of :func:`grid_step` ticks). A queue is a pure function of

- the symbol and side (hash salts) and the queue's absolute price, so a level
  keeps its queue while the mid moves past it;
- its *epoch*: every :data:`REFRESH_TICKS` ticks, at a phase hashed from its
  price, the queue is redrawn (a fresh queue, as if the resting orders had
  been replaced); its mean is the depth profile ``touch × (1 + 0.35 k)`` at
  the depth ``k`` (grid steps from where the touch would be at the narrowest
  spread) the price had *at the epoch's first tick*, so a queue does not
  change size because the mid moved;
- :data:`EVENTS` additions or cancellations per epoch at hashed ticks, sized
  in proportion to the queue's mean (so larger with depth);
- the prints at that price on that side since the epoch began (each tick's
  print trades at its touch, :func:`~mdactors.domain.tick.trade_of`): a print
  takes its size out of the queue, and a queue taken to nothing is gone until
  it is refilled, a hashed few ticks later (or by an addition, or at its next
  epoch);
- the depth *regime* (:func:`depth_regime`), a quantised liquidity level read
  from the previous block of :data:`REGIME_BLOCK` ticks: calm markets show the
  full profile, a volatility spike or a crash thins every queue and pulls the
  levels nearest the touch.

So the book at a tick is a pure function of the tick and the ticks before it
(:data:`WINDOW` of them; :func:`book_at`): every consumer that saw the same
ticks builds the same book, whoever asks and whenever. A tick older than an
epoch or a regime block is never read, so a worker that joined late builds the
same books once it has seen :data:`WINDOW` ticks; before that it reads what it
has (an epoch whose first tick it missed takes the oldest tick it holds).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from mdactors.domain.models import SECONDS_PER_YEAR
from mdactors.domain.symbols import SymbolSpec
from mdactors.domain.tick import BUY, SELL, Tick, taker_side

__all__ = [
    "DEPTH_REGIMES",
    "EVENTS",
    "REFRESH_TICKS",
    "REGIME_BLOCK",
    "WINDOW",
    "DepthRegime",
    "OrderBook",
    "book_at",
    "depth_regime",
    "grid_step",
    "synthesize_book",
]

Level = tuple[float, float]

REFRESH_TICKS = 96
"""Every queue is redrawn once per this many ticks (its phase hashed from its price)."""
EVENTS = 2
"""Additions or cancellations per queue and epoch, at hashed ticks of the epoch."""
REGIME_BLOCK = 32
"""The depth regime of the ticks of one block is read from the block before."""
WINDOW = REFRESH_TICKS
"""Ticks before a tick its book reads: the epochs' first ticks and their prints, and
the regime's block (within the window as ``2 × REGIME_BLOCK <= REFRESH_TICKS``)."""


@dataclass(frozen=True, slots=True)
class DepthRegime:
    """How much liquidity the book holds while the market is under some stress."""

    stress: float
    """The regime holds from this stress on: the mean |move| of the block over the
    mean move of the symbol's table volatility in the same time."""
    share: float
    """The share of the depth profile every queue holds."""
    pulled: int
    """Grid levels behind each touch that are empty."""
    reach: int | None
    """In a fast market a queue is sized for at most this many grid steps deeper
    than it lies now: when the mid has run towards it since its epoch began, it
    holds what its depth now allows, not what it held far from the touch
    (``None``: no bound, in a calm market, where the mid seldom runs far
    within an epoch and a bound would only make queues follow it)."""


DEPTH_REGIMES = (
    DepthRegime(0.0, 1.0, 0, None),
    DepthRegime(2.5, 0.7, 1, 8),
    DepthRegime(4.0, 0.45, 2, 4),
    DepthRegime(7.0, 0.25, 4, 4),
)
"""Calm, then thinner and thinner: the regime of a block is the last whose stress it reaches."""

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_ODD = 0xD1B54A32D192ED03
_ASK_SALT = 0x6A09E667F3BCC909
_GROWTH_PER_LEVEL = 0.35
"""Mean size at depth ``k`` (0 = touch) is ``touch × (1 + 0.35 k)``."""
_REFILL_TICKS = (2, 9)
"""A queue taken to nothing comes back after this many ticks (hashed, both ends included)."""
_REACH_CELL = 4
"""Grid steps per cell of the bound on a queue's depth (see :class:`DepthRegime`)."""
_MEAN_ABS = math.sqrt(2.0 / math.pi)
"""E|z| of a standard normal: the mean |move| of a step is σ√Δt times this."""


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


def _mix(x: int) -> int:
    """SplitMix64's finaliser: 64 well-mixed bits of ``x``."""
    x &= _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def depth_regime(spec: SymbolSpec, ticks: Sequence[Tick]) -> int:
    """The depth regime (an index of :data:`DEPTH_REGIMES`) after ``ticks`` (one block,
    oldest first): the mean |log move| between consecutive ticks over the mean
    move of the symbol's table volatility in the same time, thresholded. Below
    two ticks (or no time between them) it is 0, the calm regime."""
    moved = expected = 0.0
    sigma = spec.annual_volatility * _MEAN_ABS / math.sqrt(SECONDS_PER_YEAR * 1e9)
    for before, after in itertools.pairwise(ticks):
        dt_ns = after.ts_ns - before.ts_ns
        if dt_ns > 0 and before.price > 0 and after.price > 0:
            moved += abs(math.log(after.price / before.price))
            expected += sigma * math.sqrt(dt_ns)
    if not expected:
        return 0
    stress = moved / expected
    regime = 0
    for index, level in enumerate(DEPTH_REGIMES):
        if stress >= level.stress:
            regime = index
    return regime


def book_at(spec: SymbolSpec, tick: Tick, depth: int, recent: Sequence[Tick] = ()) -> OrderBook:
    """The book after ``tick``, ``depth`` levels a side, given the ``recent`` ticks before it.

    ``recent`` are earlier ticks of the symbol, oldest first (more than
    :data:`WINDOW` back, or at or after ``tick``, are ignored): their quotes
    place the epochs' depths, their prints deplete the queues they traded at,
    and their moves set the depth regime. ``tick``'s own print comes out of
    the touch it traded at: a sell lowers the bid's queue, a buy the ask's,
    and a print at least as large as the queue removes the level, so the side
    starts at the next price behind it. The best levels are the tick's quote
    unless its queue is gone; level prices behind it lie on the grid
    (:func:`grid_step`), so the book is never crossed. Same inputs, same
    book, and a shallower book is a prefix of a deeper one. Bids stop above
    zero, so that side may hold fewer than ``depth`` levels.
    """
    low = tick.seq - WINDOW
    held = {t.seq: t for t in recent if low <= t.seq < tick.seq}
    held[tick.seq] = tick
    return _Builder(spec, [held[seq] for seq in sorted(held)]).book(depth)


def synthesize_book(
    spec: SymbolSpec, bid: float, ask: float, depth: int, seq: int, ts_ns: int
) -> OrderBook:
    """The book at a quote with no history and no print: :func:`book_at` of a tick
    at ``(bid, ask)`` with sequence ``seq``, nothing before it."""
    mid = (bid + ask) / 2.0
    tick = Tick(spec.key, seq, mid, bid, ask, 0.0, ts_ns, 0.0, 0.0, mid, mid, 0.0)
    return book_at(spec, tick, depth)


class _Builder:
    """The book of the last of ``ticks`` (ascending sequences, the window)."""

    __slots__ = (
        "_calm",
        "_pulled",
        "_reach",
        "_scale",
        "_seqs",
        "_spec",
        "_step",
        "_takes",
        "_tick",
        "_ticks",
        "_touch_lots",
    )

    def __init__(self, spec: SymbolSpec, ticks: list[Tick]) -> None:
        self._spec = spec
        self._ticks = ticks
        self._seqs = [t.seq for t in ticks]
        self._tick = tick = ticks[-1]
        self._step = grid_step(spec)
        self._scale = spec.price_scale
        self._calm: dict[int, tuple[float, float]] = {}
        block = tick.seq // REGIME_BLOCK - 1
        start = bisect.bisect_left(self._seqs, block * REGIME_BLOCK)
        end = bisect.bisect_left(self._seqs, (block + 1) * REGIME_BLOCK)
        regime = depth_regime(spec, ticks[start:end])
        level = DEPTH_REGIMES[regime]
        self._pulled = level.pulled
        # How deep a queue may be sized: ``reach`` grid steps beyond where the touches
        # would be now, that place rounded outwards to whole cells of _REACH_CELL
        # steps so the bound moves only when the mid crosses a cell.
        self._reach = (math.inf, -math.inf)
        if level.reach is not None:
            cell = _REACH_CELL * self._step
            calm_bid, calm_ask = self._calm_at(tick.seq)
            self._reach = (
                (math.floor(calm_bid / cell) + level.reach / _REACH_CELL) * cell,
                (math.ceil(calm_ask / cell) - level.reach / _REACH_CELL) * cell,
            )
        self._touch_lots = spec.daily_volume / 20_000.0 * spec.qty_scale * level.share
        # Prints per (side, price in ticks): (seq, lots), oldest first.
        self._takes: dict[tuple[int, int], list[tuple[int, int]]] = {}
        qty_scale, scale = spec.qty_scale, self._scale
        for t in ticks:
            side = taker_side(t)
            if side is not None:
                key = (side, round((t.bid if side == SELL else t.ask) * scale))
                self._takes.setdefault(key, []).append((t.seq, round(t.volume * qty_scale)))

    def book(self, depth: int) -> OrderBook:
        tick = self._tick
        scale = self._scale
        symbol = _symbol_hash(self._spec.key)
        bid_ticks, ask_ticks = round(tick.bid * scale), round(tick.ask * scale)
        bids = self._side(symbol, SELL, bid_ticks, (bid_ticks - 1) // self._step, -1, depth)
        asks = self._side(symbol + _ASK_SALT, BUY, ask_ticks, ask_ticks // self._step + 1, 1, depth)
        return OrderBook(self._spec.key, bids, asks, tick.ts_ns, tick.seq)

    def _side(
        self, salt: int, side: int, touch: int, top: int, direction: int, depth: int
    ) -> list[Level]:
        """The touch at ``touch`` ticks, then grid indexes ``top``, ``top ± 1``…
        (``direction``), the first :data:`DEPTH_REGIMES` ``pulled`` of them empty,
        skipping queues that are gone."""
        scale, qty_scale, step = self._scale, self._spec.qty_scale, self._step
        levels: list[Level] = []
        if depth <= 0:
            return levels
        lots = self._queue(salt, side, touch)
        if lots:
            levels.append((touch / scale, lots / qty_scale))
        index = top + direction * self._pulled
        while len(levels) < depth:
            price = index * step
            if price < 1:
                break
            lots = self._queue(salt, side, price)
            if lots:
                levels.append((price / scale, lots / qty_scale))
            index += direction
        return levels

    def _calm_at(self, seq: int) -> tuple[float, float]:
        """Where the touches would be at the narrowest spread (ticks) at the last
        tick held at or before ``seq`` (the oldest held if none is)."""
        cached = self._calm.get(seq)
        if cached is None:
            position = bisect.bisect_right(self._seqs, seq) - 1
            tick = self._ticks[position if position > 0 else 0]
            mid = (tick.bid + tick.ask) * self._scale / 2.0
            half = mid * self._spec.spread_bps[0] / 20_000.0
            cached = self._calm[seq] = (mid - half, mid + half)
        return cached

    def _queue(self, salt: int, side: int, price: int) -> int:
        """Lots resting at ``price`` ticks on ``side`` (0 bid, 1 ask) after the tick
        (0: the queue is gone).

        One 64-bit hash of (level, epoch) draws the epoch's queue: 12 bits its
        jitter, then per event 12 bits its tick, 6 its size and 1 its kind.
        """
        seq = self._tick.seq
        key = salt + price * _GOLDEN
        turned = seq + ((key * _ODD) & _MASK) % REFRESH_TICKS
        start = seq - turned % REFRESH_TICKS
        calm = self._calm.get(start) or self._calm_at(start)
        if side == SELL:
            away = (min(calm[0], self._reach[0]) - price) / self._step
        else:
            away = (price - max(calm[1], self._reach[1])) / self._step
        mean = self._touch_lots * (1.0 + _GROWTH_PER_LEVEL * (away if away > 0.0 else 0.0))
        x = _mix(key + (turned // REFRESH_TICKS) * _ODD)
        lots = round(mean * (0.7 + 0.6 * (x >> 52) * 2.0**-12))
        # The epoch's additions (+) and cancellations (−) so far, by tick.
        events: list[tuple[int, int, float]] = []
        y = x
        for _ in range(EVENTS):
            at = start + (y & 0xFFF) % REFRESH_TICKS
            if at <= seq:
                fraction = 0.15 + 0.35 * ((y >> 12) & 0x3F) / 64.0
                events.append((at, 1 if y & 0x40000 else -1, fraction))
            y >>= 19
        takes = self._takes.get((side, price))
        if takes:
            events.extend((at, 0, taken) for at, taken in takes if at >= start)
        if not events:
            return lots if lots > 1 else 1
        events.sort()
        return self._replay(x, lots if lots > 1 else 1, mean, events)

    def _replay(self, x: int, lots: int, mean: float, events: list[tuple[int, int, float]]) -> int:
        """The queue after ``events`` ``(tick, kind, amount)``, in order: an addition
        (kind 1) of ``amount × mean``, a cancellation (−1) of ``amount`` of the
        queue, a print (0) of ``amount`` lots. A queue taken to nothing is gone
        until a hashed few ticks later or an addition, whichever comes first."""
        refill = -1
        for at, kind, amount in events:
            if 0 <= refill <= at:
                lots, refill = self._refilled(x, refill, mean), -1
            if kind > 0:
                lots, refill = (lots if refill < 0 else 0) + round(mean * amount), -1
            elif refill >= 0:
                continue
            elif kind < 0:
                lots -= round(lots * amount)
            else:
                lots -= int(amount)
                if lots < 1:
                    lo, hi = _REFILL_TICKS
                    refill = at + lo + _mix(x ^ at) % (hi - lo + 1)
        if 0 <= refill <= self._tick.seq:
            return self._refilled(x, refill, mean)
        return 0 if refill >= 0 else (lots if lots > 1 else 1)

    @staticmethod
    def _refilled(x: int, at: int, mean: float) -> int:
        """The queue a gone level comes back with at tick ``at``: a fresh, smaller one."""
        lots = round(mean * (0.3 + 0.4 * (_mix(x + at * _GOLDEN) >> 40) * 2.0**-24))
        return lots if lots > 1 else 1
