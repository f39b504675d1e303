"""JSON bodies of the chaos API: snake_case, unknown fields refused, every number bounded.

Bounds that depend on the settings (``MAX_PRICE_DEVIATION``,
``SCENARIO_TIMEOUT_HOURS``) are checked by the routes; the static ones are
here, so the OpenAPI document shows them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BreakerResetBody",
    "ConsolidationBody",
    "CorrelationBreakBody",
    "DivergenceBody",
    "FeedDisruptionBody",
    "MarketCrashBody",
    "MeanReversionBody",
    "PriceShockBody",
    "RallyBody",
    "ScenarioBody",
    "StablecoinDepegBody",
    "VolatilitySpikeBody",
]

MAX_SYMBOLS = 100
MAX_LATENCY_MS = 60_000.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class ScenarioBody(_Strict):
    """Timing shared by every scenario (seconds)."""

    duration_seconds: float = Field(
        60.0, gt=0, description="From start to the beginning of the recovery (onset included)."
    )
    recovery_time_seconds: float = Field(30.0, ge=0, description="Back to normal after that.")
    onset: Literal["sudden", "gradual"] | None = Field(
        None, description="Sudden = full strength at once; gradual = ramp over onset_seconds."
    )
    onset_seconds: float | None = Field(
        None, ge=0, description="Ramp length when gradual (default: half the duration)."
    )


class PriceShockBody(ScenarioBody):
    """``POST /chaos/price-shock``: one symbol jumps by ``shock_percentage`` (sudden by default)."""

    symbol: str = Field(max_length=64)
    shock_percentage: float = Field(description="E.g. -15 for a 15 % fall.")


class RallyBody(ScenarioBody):
    """``POST /chaos/rally``: one symbol climbs by ``shock_percentage`` (gradual by default)."""

    symbol: str = Field(max_length=64)
    shock_percentage: float = Field(10.0, gt=0, description="Gain at full strength, percent.")


class MarketCrashBody(ScenarioBody):
    """``POST /chaos/market-crash``: several symbols fall together; volatility,
    correlation and volume rise."""

    affect_symbols: list[str] | None = Field(
        None, max_length=MAX_SYMBOLS, description="Default: every non-stablecoin symbol."
    )
    shock_percentage: float = Field(-30.0, lt=0, description="Fall at full strength, percent.")
    volatility_multiplier: float = Field(3.0, ge=1, le=20)
    correlation: float = Field(0.9, ge=0, le=0.99, description="Shared share of the variance.")
    volume_multiplier: float = Field(3.0, ge=1, le=100)


class StablecoinDepegBody(ScenarioBody):
    """``POST /chaos/stablecoin-depeg``: a stablecoin drifts off its peg (gradual by default)."""

    symbol: str = Field("USDT/USD", max_length=64)
    target_deviation: float = Field(-0.05, description="Fraction off the peg, e.g. -0.05.")


class VolatilitySpikeBody(ScenarioBody):
    """``POST /chaos/volatility-spike``: the symbol's returns scaled up."""

    symbol: str = Field(max_length=64)
    volatility_multiplier: float = Field(3.0, gt=1, le=20)


class DivergenceBody(ScenarioBody):
    """``POST /chaos/gradual-divergence``: ``target_symbol`` drifts away from ``base_symbol``."""

    base_symbol: str = Field(max_length=64)
    target_symbol: str = Field(max_length=64)
    max_spread_bps: float = Field(200.0, ge=-5_000, le=5_000, description="Relative spread.")


class CorrelationBreakBody(ScenarioBody):
    """``POST /chaos/correlation-break``: the symbol stops following the market."""

    symbol: str = Field(max_length=64)


class ConsolidationBody(ScenarioBody):
    """``POST /chaos/consolidation``: a tight range around the current price."""

    symbol: str = Field(max_length=64)
    volatility_damping: float = Field(0.2, ge=0.01, le=1, description="Volatility kept.")
    half_life_seconds: float = Field(30.0, gt=0, le=86_400, description="Pull back to the range.")


class MeanReversionBody(ScenarioBody):
    """``POST /chaos/mean-reversion``: moves away from the current price decay."""

    symbol: str = Field(max_length=64)
    half_life_seconds: float = Field(60.0, gt=0, le=86_400)


class FeedDisruptionBody(_Strict):
    """``POST /chaos/feed-disruption``: latency, loss, stale feed or outage on some symbols."""

    symbol: str | None = Field(None, max_length=64)
    affect_symbols: list[str] | None = Field(None, max_length=MAX_SYMBOLS)
    latency_ms: float = Field(0.0, ge=0, le=MAX_LATENCY_MS)
    jitter_ms: float = Field(0.0, ge=0, le=MAX_LATENCY_MS)
    packet_loss_percentage: float = Field(0.0, ge=0, le=100)
    mode: Literal["degraded", "stale", "outage"] = Field(
        "degraded", description="degraded = latency/loss only; stale = no new ticks; outage."
    )
    republish: bool = Field(True, description="Stale mode: republish the last tick (else silence).")
    duration_seconds: float = Field(60.0, gt=0)
    recovery_time_seconds: float = Field(0.0, ge=0, description="Latency and loss fade out.")


class BreakerResetBody(_Strict):
    """``POST /chaos/circuit-breaker/reset``: reopen publication (one symbol or all)."""

    symbol: str | None = Field(None, max_length=64)
