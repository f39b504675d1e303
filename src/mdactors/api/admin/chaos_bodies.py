"""JSON bodies of the chaos API: snake_case, unknown fields refused, every number bounded.

Bounds that depend on the settings (``MAX_PRICE_DEVIATION``,
``SCENARIO_TIMEOUT_HOURS``) are checked by the routes; the static ones are
here, so the OpenAPI document shows them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BasisBlowoutBody",
    "BreakerResetBody",
    "ConsolidationBody",
    "CorrelationBreakBody",
    "DivergenceBody",
    "FeedDisruptionBody",
    "FundingSpikeBody",
    "LiquidationCascadeBody",
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
_SECONDS = Field(None, gt=0)

MovePattern = Literal["sudden_drop", "sudden_spike", "gradual_linear", "smooth", "v_shape"]
"""How a price move unfolds: ``sudden_drop``/``sudden_spike`` at full strength at once
(the move must fall/rise), ``gradual_linear`` a straight ramp over the onset (default:
the whole duration) and a straight recovery, ``smooth`` an eased ramp, ``v_shape``
straight to the extreme over the duration and straight back, with no hold."""

RecoveryPattern = Literal["smooth", "linear", "v_shape", "slow_bounce"]
"""How a crash recovers: ``smooth`` eased, ``linear`` straight, ``v_shape`` straight back
as fast as it fell (the recovery lasts as long as the crash unless given),
``slow_bounce`` a quick first bounce then a slow grind (half back in 29 % of the time)."""

VolatilityPattern = Literal["amplify", "random_walk"]
"""``amplify``: the model's own returns scaled (market links magnified); ``random_walk``:
the extra variance as an independent random walk (the symbol decouples from the market)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _Timing(_Strict):
    """When a scenario starts, holds and recovers. Every time also in minutes or hours
    (``duration_hours``, ``recovery_minutes``, ...); two that disagree are refused."""

    duration_seconds: float | None = Field(
        None, gt=0, description="From start to the beginning of the recovery (onset included)."
    )
    duration_minutes: float | None = _SECONDS
    duration_hours: float | None = _SECONDS
    recovery_time_seconds: float | None = Field(
        None, ge=0, description="Back to normal after that (also recovery_seconds/_minutes/_hours)."
    )
    recovery_seconds: float | None = Field(None, ge=0)
    recovery_minutes: float | None = Field(None, ge=0)
    recovery_hours: float | None = Field(None, ge=0)
    onset: Literal["sudden", "gradual"] | None = Field(
        None, description="Sudden = full strength at once; gradual = ramp over onset_seconds."
    )
    onset_seconds: float | None = Field(
        None, ge=0, description="Ramp length when gradual (default: half the duration)."
    )
    onset_minutes: float | None = Field(None, ge=0)
    onset_hours: float | None = Field(None, ge=0)


class PriceShockBody(_Timing):
    """``POST /chaos/price-shock``: one symbol jumps by ``shock_percentage`` (sudden by default)."""

    symbol: str = Field(max_length=64)
    shock_percentage: float = Field(description="E.g. -15 for a 15 % fall.")
    pattern: MovePattern | None = Field(None, description="How the move unfolds.")


class RallyBody(_Timing):
    """``POST /chaos/rally``: one symbol climbs by ``shock_percentage`` (gradual by default)."""

    symbol: str = Field(max_length=64)
    shock_percentage: float = Field(10.0, gt=0, description="Gain at full strength, percent.")
    pattern: MovePattern | None = Field(None, description="How the move unfolds.")


class MarketCrashBody(_Timing):
    """``POST /chaos/market-crash``: several symbols fall together; volatility,
    correlation and volume rise. The old service's names work too: ``symbols``,
    ``crash_percentage``, ``crash_duration_minutes`` (the fall), ``correlation_increase``,
    ``volume_spike_multiplier``."""

    affect_symbols: list[str] | None = Field(
        None, max_length=MAX_SYMBOLS, description="Default: every non-stablecoin symbol."
    )
    symbols: list[str] | None = Field(None, max_length=MAX_SYMBOLS)
    shock_percentage: float | None = Field(
        None, lt=0, description="Fall at full strength, percent (default -30)."
    )
    crash_percentage: float | None = Field(None, lt=0)
    crash_duration_seconds: float | None = Field(
        None,
        gt=0,
        description="How long the fall takes (also _minutes, _hours); "
        "full strength is held until duration_seconds.",
    )
    crash_duration_minutes: float | None = _SECONDS
    crash_duration_hours: float | None = _SECONDS
    volatility_multiplier: float = Field(3.0, ge=1, le=20)
    correlation: float | None = Field(
        None, ge=0, le=0.99, description="Return correlation reached at full strength (0.9)."
    )
    correlation_increase: float | None = Field(None, ge=0, le=0.99)
    volume_multiplier: float | None = Field(None, ge=1, le=100, description="Volume × (3).")
    volume_spike_multiplier: float | None = Field(None, ge=1, le=100)
    recovery_pattern: RecoveryPattern | None = Field(None, description="How it recovers.")


class StablecoinDepegBody(_Timing):
    """``POST /chaos/stablecoin-depeg``: a stablecoin drifts off its peg (gradual by default)."""

    symbol: str = Field("USDT/USD", max_length=64)
    target_deviation: float = Field(-0.05, description="Fraction off the peg, e.g. -0.05.")
    pattern: MovePattern | None = Field(None, description="How the depeg unfolds.")
    volatility_increase: float = Field(
        1.0, ge=1, le=100, description="The peg's volatility × this at full strength."
    )


class VolatilitySpikeBody(_Timing):
    """``POST /chaos/volatility-spike``: the symbol's volatility multiplied."""

    symbol: str = Field(max_length=64)
    volatility_multiplier: float = Field(3.0, gt=1, le=20)
    pattern: VolatilityPattern | None = Field(None, description="amplify (default) or random_walk.")
    preserve_trend: bool = Field(
        False, description="Pull the extra moves back to the model's path: its trend carries on."
    )


class DivergenceBody(_Timing):
    """``POST /chaos/gradual-divergence``: ``target_symbol`` drifts away from ``base_symbol``:
    a ``buildup``, a ``sustain`` at ``max_spread_bps`` and a ``recovery`` (each in
    seconds, minutes or hours; buildup + sustain is the duration)."""

    base_symbol: str = Field(max_length=64)
    target_symbol: str = Field(max_length=64)
    max_spread_bps: float = Field(200.0, ge=-5_000, le=5_000, description="Relative spread.")
    buildup_seconds: float | None = Field(None, ge=0, description="Time to reach the spread.")
    buildup_minutes: float | None = Field(None, ge=0)
    buildup_hours: float | None = Field(None, ge=0)
    sustain_seconds: float | None = Field(None, ge=0, description="Time held at the spread.")
    sustain_minutes: float | None = Field(None, ge=0)
    sustain_hours: float | None = Field(None, ge=0)
    pattern: Literal["smooth", "gradual_linear"] | None = Field(
        None, description="The buildup's and recovery's curve (default smooth)."
    )


class CorrelationBreakBody(_Timing):
    """``POST /chaos/correlation-break``: the symbol stops following the market."""

    symbol: str = Field(max_length=64)


class ConsolidationBody(_Timing):
    """``POST /chaos/consolidation``: a tight range around the current price."""

    symbol: str = Field(max_length=64)
    volatility_damping: float = Field(0.2, ge=0.01, le=1, description="Volatility kept.")
    half_life_seconds: float = Field(30.0, gt=0, le=86_400, description="Pull back to the range.")


class MeanReversionBody(_Timing):
    """``POST /chaos/mean-reversion``: moves away from the current price decay."""

    symbol: str = Field(max_length=64)
    half_life_seconds: float = Field(60.0, gt=0, le=86_400)


class FeedDisruptionBody(_Timing):
    """``POST /chaos/feed-disruption``: latency, loss, stale feed or outage on some symbols,
    optionally as the outage of a named data ``source`` (shown in state inspection)."""

    symbol: str | None = Field(None, max_length=64)
    affect_symbols: list[str] | None = Field(None, max_length=MAX_SYMBOLS)
    source: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="The data source disrupted, e.g. coingecko (default: simulator).",
    )
    latency_ms: float = Field(0.0, ge=0, le=MAX_LATENCY_MS)
    jitter_ms: float = Field(0.0, ge=0, le=MAX_LATENCY_MS)
    packet_loss_percentage: float = Field(0.0, ge=0, le=100)
    mode: Literal["degraded", "stale", "outage"] = Field(
        "degraded", description="degraded = latency/loss only; stale = no new ticks; outage."
    )
    republish: bool = Field(True, description="Stale mode: republish the last tick (else silence).")


class FundingSpikeBody(_Timing):
    """``POST /chaos/funding-spike``: a perpetual's funding rate driven to ``target_funding_rate``
    (a fraction per 8 h interval, e.g. 0.003 = +0.3 %) by the premium that gives it, so the
    basis follows (gradual by default)."""

    symbol: str = Field(max_length=64, description="A simulated perpetual, e.g. BTC-USD-PERP.")
    target_funding_rate: float = Field(
        ge=-0.0075, le=0.0075, description="Per funding interval, within the cap ±0.75 %."
    )


class BasisBlowoutBody(_Timing):
    """``POST /chaos/basis-blowout``: a perpetual's premium over its spot driven to
    ``basis_bps`` and back (gradual by default)."""

    symbol: str = Field(max_length=64, description="A simulated perpetual, e.g. BTC-USD-PERP.")
    basis_bps: float = Field(ge=-5_000, le=5_000, description="Premium at full strength, bp.")


class LiquidationCascadeBody(_Timing):
    """``POST /chaos/liquidation-cascade``: the spot (and so its perpetual) drops fast, a
    train of forced orders follows, open interest collapses and spreads widen."""

    symbol: str = Field(max_length=64, description="A simulated perpetual, e.g. BTC-USD-PERP.")
    drop_percentage: float = Field(-10.0, lt=0, description="Fall at full strength, percent.")
    liquidation_intensity: float = Field(
        10.0, ge=1, le=100, description="The liquidation rate × this at full strength."
    )
    spread_multiplier: float = Field(4.0, ge=1, le=100, description="Quoted spreads × this.")


class BreakerResetBody(_Strict):
    """``POST /chaos/circuit-breaker/reset``: reopen publication (one symbol or all)."""

    symbol: str | None = Field(None, max_length=64)


ScenarioBody = _Timing
"""The timing every scenario body shares."""
