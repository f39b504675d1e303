"""Value types that flow out of the market: ticks and trades."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdactors.domain.perpetual import PerpetualSnapshot

__all__ = ["Tick", "Trade", "trade_of"]


@dataclass(slots=True, eq=False)
class Tick:
    """One published state of a symbol.

    ``ts_ns`` is the exchange timestamp (wall clock, ns). ``change`` and
    ``change_pct`` compare with the previous tick; ``day_*`` cover the current
    UTC day. ``wire`` caches this tick's encodings (one entry per wire format),
    filled lazily by the codecs so each format is encoded at most once however
    many subscribers receive it. Treat every other field as immutable.
    """

    symbol: str
    seq: int
    price: float
    bid: float
    ask: float
    volume: float
    ts_ns: int
    change: float
    change_pct: float
    day_high: float
    day_low: float
    day_volume: float
    wire: dict[str, bytes] = field(default_factory=dict, repr=False)
    contract: PerpetualSnapshot | None = field(default=None, repr=False)
    """A perpetual's contract state (mark, index, funding, open interest) at this tick."""

    @property
    def ts_ms(self) -> int:
        """The timestamp in milliseconds since the epoch."""
        return self.ts_ns // 1_000_000


@dataclass(frozen=True, slots=True)
class Trade:
    """A print on the tape: one per tick, at the touch on the side that moved."""

    id: int
    symbol: str
    price: float
    quantity: float
    side: str
    ts_ns: int


def trade_of(tick: Tick) -> Trade | None:
    """The print a tick makes on the tape (``None`` for a tick without volume).

    It trades at the touch on the side that moved: at the bid when the price
    fell, else at the ask. The trade id is the tick's sequence.
    """
    if tick.volume <= 0:
        return None
    side = "sell" if tick.change < 0 else "buy"
    price = tick.bid if side == "sell" else tick.ask
    return Trade(tick.seq, tick.symbol, price, tick.volume, side, tick.ts_ns)
