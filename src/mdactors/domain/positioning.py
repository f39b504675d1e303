"""A perpetual's open interest and the forced orders (liquidations) that cut it.

**Open interest** (in contracts = base units) is a log process stepped on
each tick of ``dt`` seconds::

    d log OI = κ (log target − log OI) dt + g |m| dt + σ_OI dW

- the target follows the price level: ``OI₀ (price / price₀)^ELASTICITY``
  (notional open interest grows faster than the price, as positions are
  added in rising markets);
- ``m`` is the momentum, an exponential average of log returns over
  ``MOMENTUM_HALF_LIFE_S``: a trend either way draws new positions in;
- κ pulls back within ``REVERSION_HALF_LIFE_S``.

**Crowding** ``c ∈ (−1, 1)``: ``tanh`` of the estimated funding rate over
``CROWDING_SCALE`` plus the momentum's sign. Positive funding means longs
pay, so longs are crowded.

**Liquidations**: when the mark moves more than ``THRESHOLD`` within
``WINDOW_S`` against the crowded side, that side is liquidated in
proportion: ``qty = OI × share × LIQUIDATION_RATE × (|move| − THRESHOLD) ×
dt`` (``share`` = that side's crowding, at least a floor), emitted as one
to three forced orders at the mark minus a slippage of ``|move|/4``. A drop
liquidates longs (forced SELL orders), a spike shorts (forced BUY). The open
interest loses what was liquidated. ``intensity`` (a liquidation-cascade
scenario) multiplies the rate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["ForcedOrder", "OpenInterest"]

ELASTICITY = 0.5
MOMENTUM_HALF_LIFE_S = 3_600.0
REVERSION_HALF_LIFE_S = 6 * 3_600.0
TREND_GAIN = 0.5
VOLATILITY = 0.02  # per √hour
CROWDING_SCALE = 0.0003
THRESHOLD = 0.003
WINDOW_S = 60.0
LIQUIDATION_RATE = 0.05
MIN_SHARE = 0.2
_LN2 = math.log(2.0)
_BATCH = 256


@dataclass(frozen=True, slots=True)
class ForcedOrder:
    """One liquidation: ``side`` of the forced order (SELL liquidates a long)."""

    id: int
    time_ms: int
    side: str
    price: float
    qty: float


class OpenInterest:
    """Open interest, crowding and liquidations of one perpetual (see the module docstring).

    ``lot`` is the smallest quantity (the contract's lot size): smaller
    liquidations accumulate until they reach it. ``rng`` draws the noise and
    how a liquidation splits into orders, so a seeded run is reproducible.
    """

    __slots__ = (
        "_draws",
        "_marks",
        "_owed",
        "_price0",
        "_rng",
        "crowding",
        "forced",
        "intensity",
        "lot",
        "momentum",
        "oi",
        "oi0",
        "sequence",
    )

    def __init__(
        self, oi0: float, price0: float, lot: float, rng: np.random.Generator, *, keep: int = 1_000
    ) -> None:
        self.oi0 = self.oi = oi0
        self.lot = lot
        self.momentum = 0.0
        self.crowding = 0.0
        self.intensity = 1.0
        self.sequence = 0
        self.forced: deque[ForcedOrder] = deque(maxlen=keep)
        """The latest forced orders, oldest first (bounded); ids grow by one."""
        self._price0 = price0
        self._rng = rng
        self._draws: list[float] = []
        self._marks: deque[tuple[float, float]] = deque()
        self._owed = 0.0

    def _move(self, now_s: float, mark: float) -> float:
        marks = self._marks
        marks.append((now_s, mark))
        while marks[0][0] < now_s - WINDOW_S:
            marks.popleft()
        return math.log(mark / marks[0][1])

    def step(self, now_ns: int, dt: float, price: float, mark: float, funding: float) -> None:
        """Advance ``dt`` seconds at ``price`` and ``mark``; may append to :attr:`forced`."""
        if dt <= 0.0:
            return
        previous = self._marks[-1][1] if self._marks else mark
        decay = math.exp(-_LN2 * dt / MOMENTUM_HALF_LIFE_S)
        self.momentum = self.momentum * decay + (1.0 - decay) * math.log(mark / previous) / dt
        move = self._move(now_ns / 1e9, mark)
        trend = self.momentum * MOMENTUM_HALF_LIFE_S / _LN2  # ≈ the recent hour's return
        self.crowding = math.tanh(funding / CROWDING_SCALE + 5.0 * trend)
        kappa = _LN2 / REVERSION_HALF_LIFE_S
        target = math.log(self.oi0 * (price / self._price0) ** ELASTICITY)
        log_oi = math.log(self.oi)
        if not self._draws:
            self._draws = self._rng.standard_normal(_BATCH).tolist()
        shock = VOLATILITY * math.sqrt(dt / 3_600.0) * self._draws.pop()
        log_oi += kappa * (target - log_oi) * dt + TREND_GAIN * abs(self.momentum) * dt + shock
        self.oi = math.exp(log_oi)
        excess = abs(move) - THRESHOLD
        if excess > 0.0:
            longs = move < 0.0  # a fall liquidates longs
            share = max(MIN_SHARE, self.crowding if longs else -self.crowding)
            self._owed += self.oi * share * LIQUIDATION_RATE * self.intensity * excess * dt
            self._liquidate(now_ns, mark, longs, abs(move))

    def _liquidate(self, now_ns: int, mark: float, longs: bool, move: float) -> None:
        lots = math.floor(self._owed / self.lot)
        if lots < 1:
            return
        qty = min(lots * self.lot, self.oi * 0.5)
        self._owed = 0.0
        self.oi -= qty
        parts = int(self._rng.integers(1, 4))
        weights = self._rng.dirichlet(np.ones(parts)) if parts > 1 else np.ones(1)
        slippage = move / 4.0
        price = mark * (1.0 - slippage if longs else 1.0 + slippage)
        side = "SELL" if longs else "BUY"
        given = 0.0
        for index, weight in enumerate(weights.tolist()):
            part = qty - given if index == parts - 1 else round(qty * weight / self.lot) * self.lot
            if part < self.lot:
                continue
            given += part
            self.sequence += 1
            self.forced.append(ForcedOrder(self.sequence, now_ns // 1_000_000, side, price, part))
