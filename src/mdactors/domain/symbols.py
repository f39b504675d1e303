"""Symbol spellings and the one table of per-symbol market parameters.

Every spelling the ecosystem uses (``BTC/USD``, ``BTC-USD``, ``btc_usd``,
bare ``BTC``) maps to one key, ``BASE/QUOTE`` in upper case. Perpetual swaps
(``BTC-USD-PERP``, ``btc/usd-perp``, ``BTC-PERP``) map to ``BASE/QUOTE-PERP``:
a perpetual is simulated on its spot symbol (:func:`spot_of`), so its spec
is the spot's. Symbols not in the table still get a deterministic synthetic
spec, so a configured symbol we have no calibration for simulates sensibly
and an unknown symbol can be priced on request.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_QUOTE",
    "KNOWN_SPECS",
    "PERP_SUFFIX",
    "SymbolError",
    "SymbolSpec",
    "is_perpetual",
    "normalize_symbol",
    "spec_for",
    "spot_of",
]

DEFAULT_QUOTE = "USD"
PERP_SUFFIX = "-PERP"
_PERP_WORDS = {"PERP", "SWAP"}
_ASSET = re.compile(r"^[A-Z0-9]{1,12}$")
_SEPARATORS = re.compile(r"[/\-_:]")


class SymbolError(ValueError):
    """A symbol string cannot be read as ``BASE/QUOTE`` or a bare asset."""


def normalize_symbol(raw: str) -> str:
    """Return the canonical key (``BTC/USD``, ``BTC/USD-PERP``) for any accepted spelling.

    Raises :class:`SymbolError` for empty, over-long or malformed input.
    """
    if not isinstance(raw, str):
        raise SymbolError("symbol must be a string")
    text = raw.strip().upper()
    malformed = (
        f"malformed symbol {raw[:40]!r}: expected e.g. BTC/USD, BTC-USD, BTC or BTC-USD-PERP"
    )
    if not text or len(text) > 32:
        raise SymbolError(malformed)
    parts = _SEPARATORS.split(text)
    perpetual = len(parts) > 1 and parts[-1] in _PERP_WORDS
    if perpetual:
        parts.pop()
    if len(parts) == 1:
        parts.append(DEFAULT_QUOTE)
    if len(parts) != 2 or not all(_ASSET.match(part) for part in parts):
        raise SymbolError(malformed)
    return f"{parts[0]}/{parts[1]}{PERP_SUFFIX if perpetual else ''}"


def is_perpetual(key: str) -> bool:
    """Whether the canonical ``key`` names a perpetual swap."""
    return key.endswith(PERP_SUFFIX)


def spot_of(key: str) -> str:
    """The spot symbol a perpetual is simulated on (``BTC/USD-PERP`` → ``BTC/USD``);
    any other key is its own spot."""
    return key.removesuffix(PERP_SUFFIX)


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """Market parameters of one symbol.

    ``annual_volatility`` is the yearly σ of log returns; ``spread_bps`` is the
    (narrowest, widest) quoted spread in basis points; ``daily_volume`` is in
    base units, and sizes the simulated tick volumes and book depth.
    """

    key: str
    seed_price: float
    annual_volatility: float
    spread_bps: tuple[float, float]
    price_decimals: int
    qty_decimals: int
    daily_volume: float
    price_scale: int = field(init=False, repr=False, compare=False)
    """``10 ** price_decimals``: prices are ``integer ticks / price_scale``."""
    qty_scale: int = field(init=False, repr=False, compare=False)
    """``10 ** qty_decimals``: quantities are ``integer lots / qty_scale``."""

    def __post_init__(self) -> None:
        # Derived once: the tick path divides by these instead of calling round(x, n).
        object.__setattr__(self, "price_scale", 10**self.price_decimals)
        object.__setattr__(self, "qty_scale", 10**self.qty_decimals)

    @property
    def base(self) -> str:
        """The base asset (``BTC`` of ``BTC/USD``)."""
        return self.key.split("/", 1)[0]

    @property
    def quote(self) -> str:
        """The quote asset (``USD`` of ``BTC/USD`` and of ``BTC/USD-PERP``)."""
        return spot_of(self.key).split("/", 1)[1]

    @property
    def perpetual(self) -> bool:
        """Whether this is a perpetual swap (simulated on :func:`spot_of` its key)."""
        return is_perpetual(self.key)

    @property
    def tick_size(self) -> float:
        """The smallest price increment."""
        return 10.0**-self.price_decimals

    @property
    def lot_size(self) -> float:
        """The smallest quantity increment."""
        return 10.0**-self.qty_decimals


def _spec(
    key: str, price: float, vol: float, spread: tuple[float, float], pd: int, qd: int, dv: float
) -> SymbolSpec:
    return SymbolSpec(key, price, vol, spread, pd, qd, dv)


KNOWN_SPECS: dict[str, SymbolSpec] = {
    spec.key: spec
    for spec in (
        _spec("BTC/USD", 43_000.0, 0.50, (1.0, 5.0), 2, 6, 25_000.0),
        _spec("ETH/USD", 2_300.0, 0.65, (2.0, 8.0), 2, 5, 300_000.0),
        _spec("SOL/USD", 150.0, 0.90, (3.0, 10.0), 3, 3, 2_500_000.0),
        _spec("ADA/USD", 0.45, 0.80, (4.0, 12.0), 5, 1, 500_000_000.0),
        _spec("DOT/USD", 7.0, 0.80, (4.0, 12.0), 4, 2, 15_000_000.0),
        _spec("XRP/USD", 0.60, 0.80, (3.0, 10.0), 5, 1, 900_000_000.0),
        _spec("DOGE/USD", 0.08, 0.95, (4.0, 14.0), 6, 0, 2_000_000_000.0),
        _spec("LINK/USD", 14.0, 0.85, (4.0, 12.0), 4, 2, 20_000_000.0),
        _spec("AVAX/USD", 35.0, 0.90, (4.0, 12.0), 3, 2, 10_000_000.0),
        # About 7 bp of daily σ: 0.0007 × √365.
        _spec("USDT/USD", 1.0, 0.0134, (0.1, 2.0), 5, 2, 5_000_000_000.0),
        _spec("USDC/USD", 1.0, 0.0115, (0.1, 2.0), 5, 2, 3_000_000_000.0),
        _spec("BTC/ETH", 18.7, 0.40, (5.0, 15.0), 5, 4, 2_000.0),
        _spec("ETH/BTC", 0.0535, 0.40, (5.0, 15.0), 6, 4, 40_000.0),
        _spec("BTC/USDT", 43_000.0, 0.50, (1.0, 5.0), 2, 6, 30_000.0),
        _spec("ETH/USDT", 2_300.0, 0.65, (2.0, 8.0), 2, 5, 350_000.0),
    )
}


_PERP_VOLUME = 3.0
"""Perpetuals trade about three times their spot's volume (BTC, 2024–2025)."""


def _unit_interval(key: str, salt: str) -> float:
    digest = hashlib.blake2b(f"{salt}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def spec_for(key: str) -> SymbolSpec:
    """The spec of ``key``: calibrated if known, else deterministic and synthetic.

    A perpetual has its spot's spec (price grid, volatility, spread) with the
    busier volume perpetuals trade. A synthetic price lies between 1 and 1000
    and depends on the key only, so every process and every run price an
    unknown symbol the same way.
    """
    if is_perpetual(key):
        spot = spec_for(spot_of(key))
        return dataclasses.replace(spot, key=key, daily_volume=spot.daily_volume * _PERP_VOLUME)
    known = KNOWN_SPECS.get(key)
    if known is not None:
        return known
    price = round(10 ** (3 * _unit_interval(key, "price")), 4) or 1.0
    volatility = 0.4 + 0.6 * _unit_interval(key, "vol")
    price_decimals = max(2, 6 - len(str(int(price))))
    return SymbolSpec(
        key=key,
        seed_price=max(price, 1.0),
        annual_volatility=round(volatility, 4),
        spread_bps=(5.0, 20.0),
        price_decimals=price_decimals,
        qty_decimals=2,
        daily_volume=round(5_000_000.0 / max(price, 1.0), 2),
    )
