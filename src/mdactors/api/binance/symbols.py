"""Binance names of the market's symbols: the one mapping both the REST and the WS layer use.

Every simulated symbol gets its Binance name, base and quote without a
separator (``BTC/USD`` → ``BTCUSD``). Aliases (``BINANCE_SYMBOL_ALIASES``, off
by default, parsed by :mod:`mdactors.settings`) serve a symbol under further
names, e.g. ``BTC/USD`` also as ``BTCUSDT`` with quote asset ``USDT``: an
alias is a full Binance market of its own (listed in ``exchangeInfo``,
answering every endpoint and stream) whose prices are those of its symbol.
Names are matched case-insensitively, as Binance's stream names are lower
case and its REST names upper case.

Spot (``/api/v3``) and USD-M futures (``/fapi/v1``) are two venues, each with
its own markets: spot lists the spot symbols and crosses, futures the
perpetuals (``BTC/USD-PERP`` → ``BTCUSD``, margined in its quote asset). An
alias belongs to the venue of its key: ``BTC/USD-PERP=BTC/USDT`` is the
futures market ``BTCUSDT``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mdactors.domain.symbols import SymbolSpec, is_perpetual, spec_for, spot_of

__all__ = ["BinanceMarket", "BinanceSymbols"]


@dataclass(frozen=True, slots=True)
class BinanceMarket:
    """One Binance market: its name, assets, and the simulated symbol behind it."""

    name: str
    base: str
    quote: str
    key: str

    @property
    def spec(self) -> SymbolSpec:
        """Tick size, lot size and volumes of the symbol behind this market."""
        return spec_for(self.key)

    @property
    def index_key(self) -> str:
        """The symbol whose mid is this market's index (a perpetual's spot; else itself)."""
        return spot_of(self.key)

    @property
    def stream_name(self) -> str:
        """The lower-case spelling used in stream names (``btcusd``)."""
        return self.name.lower()


class BinanceSymbols:
    """The Binance markets of a set of simulated symbols (plus aliases).

    ``aliases`` are normalised ``KEY=BASE/QUOTE`` strings (the settings' form).
    ``perpetual`` chooses the venue: spot symbols (perpetuals left out) or
    the USD-M futures perpetuals (only they); aliases of the other venue's
    symbols are skipped.

    Raises ``ValueError`` when two markets would share a name (an alias equal
    to a simulated symbol's own name, or to another alias) or when an alias
    names a symbol that is not simulated.
    """

    def __init__(
        self, keys: Iterable[str], aliases: Iterable[str] = (), *, perpetual: bool = False
    ) -> None:
        markets: list[BinanceMarket] = []
        for key in keys:
            if is_perpetual(key) != perpetual:
                continue
            base, quote = spot_of(key).split("/")
            markets.append(BinanceMarket(base + quote, base, quote, key))
        simulated = {market.key for market in markets}
        for alias in aliases:
            key, _, pair = alias.partition("=")
            if is_perpetual(key) != perpetual:
                continue
            base, _, quote = pair.partition("/")
            if key not in simulated:
                raise ValueError(f"alias {base}{quote} names {key}, which is not simulated")
            markets.append(BinanceMarket(base + quote, base, quote, key))
        self._by_name: dict[str, BinanceMarket] = {}
        for market in markets:
            if market.name in self._by_name:
                raise ValueError(f"two markets would be named {market.name}")
            self._by_name[market.name] = market

    @property
    def markets(self) -> list[BinanceMarket]:
        """Every market, simulated symbols first, in configuration order."""
        return list(self._by_name.values())

    def get(self, name: str) -> BinanceMarket | None:
        """The market called ``name`` (any case), or ``None``."""
        if not isinstance(name, str) or len(name) > 40:
            return None
        return self._by_name.get(name.upper())
