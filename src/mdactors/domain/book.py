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
- two additions or cancellations per epoch at hashed ticks, an addition
  sized in proportion to the queue's mean (so larger with depth), a
  cancellation to the queue;
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
_LAZY_DEPTH = 8
"""Up to this depth a book computes the epochs' depth references only as its levels ask."""
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
        "_base",
        "_bounds",
        "_pulled",
        "_refs",
        "_seqs",
        "_spec",
        "_step",
        "_takes",
        "_tick",
        "_ticks",
    )

    def __init__(self, spec: SymbolSpec, ticks: list[Tick]) -> None:
        self._spec = spec
        self._tick = tick = ticks[-1]
        self._step = step = grid_step(spec)
        seqs = [t.seq for t in ticks]
        block = tick.seq // REGIME_BLOCK - 1
        start = bisect.bisect_left(seqs, block * REGIME_BLOCK)
        end = bisect.bisect_left(seqs, (block + 1) * REGIME_BLOCK)
        level = DEPTH_REGIMES[depth_regime(spec, ticks[start:end])]
        self._pulled = level.pulled
        self._base = spec.daily_volume / 20_000.0 * spec.qty_scale * level.share
        self._ticks, self._seqs = ticks, seqs
        # How deep a queue may be sized: ``reach`` grid steps beyond where the touches
        # would be now, that place rounded outwards to whole cells of _REACH_CELL
        # steps so the bound moves only when the mid crosses a cell.
        self._bounds = (math.inf, -math.inf)
        if level.reach is not None:
            cell = _REACH_CELL * step
            calm_bid, calm_ask = _calm_place(spec, tick)
            self._bounds = (
                (math.floor(calm_bid / cell) + level.reach / _REACH_CELL) * cell,
                (math.ceil(calm_ask / cell) - level.reach / _REACH_CELL) * cell,
            )
        # Per side and per age ``a`` of an epoch (it began at tick ``seq - a``): the
        # place depth is counted from, in ticks (filled as levels ask, :meth:`_ref`).
        self._refs: tuple[list[float | None], ...] = (
            [None] * REFRESH_TICKS,
            [None] * REFRESH_TICKS,
        )
        # Per side, prints by price (a quote's price is ticks / price_scale, the double a
        # level's price is too): (seq, quantity), oldest first.
        self._takes: tuple[dict[float, list[tuple[int, float]]], ...] = ({}, {})
        for t in ticks:
            side = taker_side(t)
            if side is not None:
                price = t.bid if side == SELL else t.ask
                self._takes[side].setdefault(price, []).append((t.seq, t.volume))

    def book(self, depth: int) -> OrderBook:
        tick, step = self._tick, self._step
        if depth > _LAZY_DEPTH:
            self._fill_refs()
        scale = self._spec.price_scale
        symbol = _symbol_hash(self._spec.key)
        bid_ticks, ask_ticks = round(tick.bid * scale), round(tick.ask * scale)
        bids = self._side(symbol, SELL, bid_ticks, (bid_ticks - 1) // step, -1, depth)
        asks = self._side(symbol + _ASK_SALT, BUY, ask_ticks, ask_ticks // step + 1, 1, depth)
        return OrderBook(self._spec.key, bids, asks, tick.ts_ns, tick.seq)

    def _side(
        self, salt: int, side: int, touch: int, top: int, direction: int, depth: int
    ) -> list[Level]:
        """The touch at ``touch`` ticks, then grid indexes ``top``, ``top ± 1``…
        (``direction``: −1 bids, 1 asks), the regime's ``pulled`` first ones empty,
        skipping queues that are gone (the module docstring tells what sizes one)."""
        levels: list[Level] = []
        scale, qty_scale, step = self._spec.price_scale, self._spec.qty_scale, self._step
        seq, refs, takes = self._tick.seq, self._refs[side], self._takes[side]
        base = self._base
        slope = base * _GROWTH_PER_LEVEL / step * direction
        period, mask = REFRESH_TICKS, _MASK
        price, index = touch, top + direction * self._pulled
        drawn, get = _DRAWN, _DRAWN.get
        while len(levels) < depth:
            if price < 1:
                break
            key = salt + price * _GOLDEN
            turned = seq + ((key * _ODD) & mask) % period
            age = turned % period
            ref = refs[age]
            if ref is None:
                ref = self._ref(side, age)
            mean = base + slope * (price - ref) if (price - ref) * direction > 0 else base
            slot = (key, turned // period, mean)
            epoch = get(slot)
            if epoch is None:
                if len(drawn) >= _DRAWN_CAPACITY:
                    drawn.clear()
                epoch = drawn[slot] = _draw(key, turned // period, seq - age, mean)
            quoted = price / scale
            printed = takes.get(quoted)
            if printed is not None:
                lots = self._evolve(epoch, seq - age, mean, printed)
            else:
                # No print: the drawn queue, then its events so far (none empties it).
                lots, first, after_first, second, after_second = epoch[1:6]
                if second <= seq:
                    lots = after_second
                elif first <= seq:
                    lots = after_first
            if lots:
                levels.append((quoted, lots / qty_scale))
            price = index * step
            index += direction
        return levels

    def _fill_refs(self) -> None:
        """Every age's :meth:`_ref` at once, in one sweep down the window (a deep book
        asks for nearly all of them)."""
        ticks, newest = self._ticks, self._tick.seq
        bid_bound, ask_bound = self._bounds
        bids, asks = self._refs
        position = len(ticks) - 1
        for age in range(REFRESH_TICKS):
            while position > 0 and ticks[position].seq > newest - age:
                position -= 1
            calm_bid, calm_ask = _calm_place(self._spec, ticks[position])
            bids[age] = calm_bid if calm_bid < bid_bound else bid_bound
            asks[age] = calm_ask if calm_ask > ask_bound else ask_bound

    def _ref(self, side: int, age: int) -> float:
        """Where depth is counted from (ticks) for an epoch that began ``age`` ticks
        ago: where the touch of ``side`` would be at the narrowest spread at the
        last tick held at or before then (the oldest held if none is), bounded by
        the regime's reach."""
        position = bisect.bisect_right(self._seqs, self._tick.seq - age) - 1
        calm = _calm_place(self._spec, self._ticks[position if position > 0 else 0])
        bound = self._bounds[side]
        ref = min(calm[0], bound) if side == SELL else max(calm[1], bound)
        self._refs[side][age] = ref
        return ref

    def _evolve(
        self, epoch: _Epoch, start: int, mean: float, printed: list[tuple[int, float]]
    ) -> int:
        """The queue of ``epoch`` (first tick ``start``, mean ``mean`` lots) after its
        events and the ``printed`` ``(seq, quantity)`` up to the tick (0: gone). A
        queue taken to nothing is gone until a hashed few ticks later or an
        addition, whichever comes first."""
        seq = self._tick.seq
        x, lots = epoch[0], epoch[1]
        merged = [event for event in _events(x, start) if event[0] <= seq]
        qty_scale = self._spec.qty_scale
        merged.extend((at, 0, round(taken * qty_scale)) for at, taken in printed if at >= start)
        merged.sort()
        refill = -1
        for at, kind, amount in merged:
            if 0 <= refill <= at:
                lots, refill = _refilled(x, refill, mean), -1
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
        if 0 <= refill <= seq:
            return _refilled(x, refill, mean)
        return 0 if refill >= 0 else (lots if lots > 1 else 1)


_Epoch = tuple[int, int, int, int, int, int]
"""A queue's epoch as drawn: (hash, lots, first event's tick, lots after it, second
event's tick, lots after both)."""
_DRAWN: dict[tuple[int, int, float], _Epoch] = {}
"""Epochs already drawn, by (level hash, epoch, mean): a queue is redrawn only at
its epoch's turn, so consecutive books share the work (a cache of a pure function)."""
_DRAWN_CAPACITY = 16_384
"""About 7 MB (some 450 bytes an epoch): every level of 100-level books of 40 symbols,
twice over; a deeper book only redraws more often."""


def _draw(key: int, epoch: int, start: int, mean: float) -> _Epoch:
    """The queue of level hash ``key`` in ``epoch`` (its first tick ``start``, its
    mean ``mean`` lots): one 64-bit hash draws it, 12 bits its jitter, then per
    event 12 bits its tick, 6 its size and 1 its kind (addition or cancellation),
    applied in order; a cancellation takes less than half the queue, so without
    prints a queue never empties."""
    x = _mix(key + epoch * _ODD)
    lots = round(mean * (0.7 + 0.6 * (x >> 52) * 2.0**-12))
    lots = lots if lots > 1 else 1
    events = _events(x, start)
    path = [lots]
    for _, kind, amount in events:
        path.append(path[-1] + (round(mean * amount) if kind > 0 else -round(path[-1] * amount)))
    (first, _, _), (second, _, _) = events
    return (x, lots, first, path[1], second, path[2])


def _events(x: int, start: int) -> list[tuple[int, int, float]]:
    """The epoch's two events by tick, drawn from bits 0–37 of its hash ``x``:
    ``(tick, kind, size)``, kind 1 an addition of ``size × mean``, −1 a
    cancellation of ``size`` of the queue."""
    return sorted(
        (start + (bits & 0xFFF) % REFRESH_TICKS, 1 if bits & 0x40000 else -1,
         0.15 + 0.35 * ((bits >> 12) & 0x3F) / 64)
        for bits in (x, x >> 19)
    )  # fmt: skip


def _refilled(x: int, at: int, mean: float) -> int:
    """The queue a gone level comes back with at tick ``at``: a fresh, smaller one."""
    lots = round(mean * (0.3 + 0.4 * (_mix(x + at * _GOLDEN) >> 40) * 2.0**-24))
    return lots if lots > 1 else 1


def _calm_place(spec: SymbolSpec, tick: Tick) -> tuple[float, float]:
    """Where ``tick``'s touches would be at the symbol's narrowest spread (ticks)."""
    mid = (tick.bid + tick.ask) * spec.price_scale / 2.0
    half = mid * spec.spread_bps[0] / 20_000.0
    return mid - half, mid + half
