"""A perpetual's premium, funding rate and mark price, by Binance USDⓈ-M's published rules.

- **Premium index** ``P = [max(0, impact bid − index) − max(0, index − impact
  ask)] / index``, sampled every ``sample_s`` (5 s). The impact prices here
  are the perpetual's best bid and ask (the simulated book is deep enough at
  the top that the impact notional fills there).
- **Funding rate** of an interval (8 h, settled at 00:00, 08:00 and 16:00
  UTC): ``F = P̄ + clamp(I − P̄, −0.05 %, +0.05 %)`` with the interest rate
  ``I`` = 0.01 % per interval and ``P̄`` the interval's premium samples
  averaged with linearly growing weights (``Σ k·P_k / Σ k``), capped at
  ±``cap``. Before the interval ends the same formula over the samples so
  far is the *estimated* rate that ``premiumIndex`` shows.
- **Mark price** ``median(price 1, price 2, last)``: price 1 = index × (1 +
  estimated rate × time to the next funding / interval); price 2 = index +
  the 30-second moving average of the basis (mid − index, sampled each
  second); last = the perpetual's own price.

Everything is pure and driven by the caller's clock (exchange time in ns),
so a seeded run and a replay give the same rates.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from mdactors.domain.perpetual import BasisParams
from mdactors.domain.symbols import SymbolSpec

__all__ = [
    "FundingRules",
    "FundingSettlement",
    "FundingState",
    "funding_offset_bps",
    "funding_rate",
    "median3",
    "premium_for_funding",
    "premium_index",
]

_NS = 1_000_000_000


@dataclass(frozen=True, slots=True)
class FundingRules:
    """The contract's funding parameters (Binance's defaults for USDⓈ-M perpetuals)."""

    interval_s: int = 8 * 3600
    interest_rate: float = 0.0001
    clamp: float = 0.0005
    cap: float = 0.0075
    sample_s: int = 5
    basis_window_s: int = 30


@dataclass(frozen=True, slots=True)
class FundingSettlement:
    """One settled funding: its time (ms, on the interval grid), rate and mark then."""

    time_ms: int
    rate: float
    mark: float


def premium_index(index: float, bid: float, ask: float) -> float:
    """``[max(0, bid − index) − max(0, index − ask)] / index`` (0 inside the spread)."""
    return (max(0.0, bid - index) - max(0.0, index - ask)) / index


def funding_rate(average_premium: float, rules: FundingRules) -> float:
    """``P̄ + clamp(I − P̄, ±clamp)``, then capped at ±``rules.cap``."""
    spread = min(rules.clamp, max(-rules.clamp, rules.interest_rate - average_premium))
    return min(rules.cap, max(-rules.cap, average_premium + spread))


def median3(a: float, b: float, c: float) -> float:
    """The middle one of three numbers."""
    return max(min(a, b), min(max(a, b), c))


class FundingState:
    """A perpetual's running premium average, basis average, settlements and mark.

    :meth:`observe` takes every tick of the perpetual (exchange time, index,
    best bid and ask, last price) and returns the mark price then. Samples
    fall on the ``sample_s`` and one-second grids of exchange time, so the
    averages do not depend on the tick interval; a tick that crosses several
    grid points repeats its values for each (the price held meanwhile).
    """

    __slots__ = (
        "_basis",
        "_interval",
        "_next_basis_s",
        "_next_sample_s",
        "_samples",
        "_weighted",
        "estimated_rate",
        "history",
        "index",
        "last",
        "mark",
        "premium",
        "rules",
        "time_ns",
    )

    def __init__(self, rules: FundingRules, time_ns: int, *, history: int = 1_000) -> None:
        self.rules = rules
        self.history: deque[FundingSettlement] = deque(maxlen=history)
        """Settled fundings, oldest first (bounded)."""
        self.time_ns = time_ns
        self._interval = time_ns // _NS // rules.interval_s
        self._next_sample_s = -(-time_ns // _NS // rules.sample_s) * rules.sample_s
        self._next_basis_s = time_ns // _NS
        self._samples = 0
        self._weighted = 0.0
        self._basis: deque[float] = deque(maxlen=rules.basis_window_s)
        self.premium = 0.0
        self.estimated_rate = rules.interest_rate
        self.index = self.last = self.mark = math.nan

    @property
    def next_funding_ms(self) -> int:
        """When the current interval settles (ms since the epoch)."""
        return (self._interval + 1) * self.rules.interval_s * 1000

    def _average_premium(self) -> float:
        count = self._samples
        return self._weighted / (count * (count + 1) / 2) if count else 0.0

    def _settle(self) -> None:
        rate = funding_rate(self._average_premium(), self.rules) if self._samples else None
        if rate is not None:
            self.history.append(FundingSettlement(self.next_funding_ms, rate, self.mark))
        self._interval += 1
        self._samples = 0
        self._weighted = 0.0

    def observe(self, time_ns: int, index: float, bid: float, ask: float, last: float) -> float:
        """Take one tick of the perpetual; the mark price now."""
        rules = self.rules
        premium = premium_index(index, bid, ask)
        basis = (bid + ask) / 2.0 - index
        seconds = time_ns // _NS
        while self._next_sample_s <= seconds:
            if self._next_sample_s // rules.interval_s > self._interval:
                self._settle()
            self._samples += 1
            self._weighted += self._samples * premium
            self._next_sample_s += rules.sample_s
        # The basis window holds at most its length of one-second samples.
        self._basis.extend([basis] * min(seconds - self._next_basis_s + 1, rules.basis_window_s))
        self._next_basis_s = max(self._next_basis_s, seconds + 1)
        self.time_ns = time_ns
        self.premium = premium
        self.estimated_rate = funding_rate(self._average_premium(), rules)
        self.index, self.last = index, last
        to_funding = max(0.0, self.next_funding_ms / 1000.0 - time_ns / _NS) / rules.interval_s
        price_1 = index * (1.0 + self.estimated_rate * to_funding)
        price_2 = index + sum(self._basis) / len(self._basis)
        self.mark = median3(price_1, price_2, last)
        return self.mark


def premium_for_funding(rate: float, rules: FundingRules) -> float:
    """The premium index whose interval average gives funding ``rate`` (the formula's inverse:
    above the interest rate ``P = F + clamp``, below it ``P = F − clamp``)."""
    if rate > rules.interest_rate:
        return rate + rules.clamp
    if rate < rules.interest_rate:
        return rate - rules.clamp
    return rules.interest_rate


def funding_offset_bps(rate: float, spec: SymbolSpec, rules: FundingRules | None = None) -> float:
    """How far (bp) to lift a perpetual above its usual basis so its funding becomes ``rate``:
    the premium :func:`premium_for_funding` asks for, reached by the bid (the ask, for a
    discount), so half a typical spread beyond the mid, less the basis's own mean."""
    premium = premium_for_funding(rate, rules or FundingRules())
    half_spread = sum(spec.spread_bps) / 4.0 / 10_000.0
    lift = premium + math.copysign(half_spread, premium) if premium else 0.0
    return (lift - BasisParams().mean_bps / 10_000.0) * 10_000.0
