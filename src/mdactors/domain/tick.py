"""Value types that flow out of the market: ticks and trades."""

from __future__ import annotations

from dataclasses import dataclass, field

from mdactors.domain.perpetual import PerpetualSnapshot

__all__ = ["BUY", "SELL", "Tick", "Trade", "last_trade_id", "taker_side", "trade_of"]

SELL = 0
"""A print at the bid (:func:`taker_side`)."""
BUY = 1
"""A print at the ask."""


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
    trades: int = -1
    """Prints on the symbol's live tape so far, this tick's included (the actor counts
    them: not every tick prints); -1 when unknown (:func:`last_trade_id`)."""

    @property
    def ts_ms(self) -> int:
        """The timestamp in milliseconds since the epoch."""
        return self.ts_ns // 1_000_000


@dataclass(frozen=True, slots=True)
class Trade:
    """A print on the tape: at most one per tick, at the touch on the side that moved."""

    id: int
    symbol: str
    price: float
    quantity: float
    side: str
    ts_ns: int


def taker_side(tick: Tick) -> int | None:
    """The side a tick's print takes: :data:`SELL` (at the bid) when the price fell,
    else :data:`BUY` (at the ask); ``None`` for a tick without volume (no print)."""
    if tick.volume <= 0:
        return None
    return SELL if tick.change < 0 else BUY


def last_trade_id(tick: Tick) -> int:
    """The id of the newest live print as of ``tick`` (its own, when it printed): the
    count of prints the actor keeps, so ids run without holes although not every
    tick prints. A tick that carries no count (made by a replay, a test or an
    older writer) takes its sequence, as when every tick printed."""
    return tick.trades if tick.trades >= 0 else tick.seq


def trade_of(tick: Tick) -> Trade | None:
    """The print a tick makes on the tape (``None`` for a tick without volume).

    It trades at the touch on the side that moved (:func:`taker_side`); its
    id is :func:`last_trade_id`.
    """
    side = taker_side(tick)
    if side is None:
        return None
    ident = last_trade_id(tick)
    if side == SELL:
        return Trade(ident, tick.symbol, tick.bid, tick.volume, "sell", tick.ts_ns)
    return Trade(ident, tick.symbol, tick.ask, tick.volume, "buy", tick.ts_ns)
