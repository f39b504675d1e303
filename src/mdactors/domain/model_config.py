"""Which price model each symbol runs: calibrated defaults plus per-symbol overrides.

Defaults: every crypto asset runs a long-memory GARCH diffusion with
Student-t (ν = 5) innovations, mostly negative Merton jumps, a daily rhythm
and a loading on the common market factor, at the yearly volatility of its
:class:`~mdactors.domain.symbols.SymbolSpec`;
stablecoins run an Ornstein–Uhlenbeck process around their peg with about
7 bp of daily σ.

Overrides come from the ``MODEL_CONFIG`` setting, a JSON object keyed by symbol
(any spelling) or ``"*"`` (every symbol), each value an object of
:class:`~mdactors.domain.models.PriceModel` fields plus an optional ``"model"``
naming a preset to start from instead of the default::

    {"*": {"factor_loading": 0.5},
     "BTC/USD": {"model": "gbm"},
     "ETH-USD": {"volatility": 0.8, "jump_intensity": 0},
     "USDT": {"model": "ou", "mean_level": 0.999}}

Presets: ``gbm`` (Gaussian, constant volatility), ``merton`` (GBM plus
jumps), ``garch`` (the crypto default), ``ou`` (the stablecoin default).
Precedence: default < preset < ``"*"`` < the symbol's own entry.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

from mdactors.domain.models import HOURS_PER_YEAR, ModelError, PriceModel
from mdactors.domain.symbols import SymbolError, SymbolSpec, normalize_symbol, spec_for

__all__ = [
    "PRESETS",
    "STABLECOINS",
    "ModelConfig",
    "default_model",
    "model_for",
    "ou_volatility",
    "parse_model_config",
]

ModelConfig = Mapping[str, Mapping[str, Any]]
"""Overrides by symbol key (or ``"*"``): PriceModel fields and an optional ``model`` preset."""

STABLECOINS = frozenset({"USDT", "USDC", "DAI", "BUSD", "TUSD", "USDP", "FDUSD"})
STABLECOIN_DAILY_SIGMA = 0.0007
STABLECOIN_HALF_LIFE_HOURS = 12.0

_FIELDS = {field.name for field in dataclasses.fields(PriceModel)}
_LOADINGS = {
    "BTC/USD": 0.8,
    "BTC/USDT": 0.8,
    "ETH/USD": 0.8,
    "ETH/USDT": 0.8,
    "SOL/USD": 0.7,
    "ADA/USD": 0.65,
    "DOT/USD": 0.65,
    "LINK/USD": 0.65,
    "AVAX/USD": 0.65,
    "XRP/USD": 0.6,
    "DOGE/USD": 0.55,
    "BTC/ETH": 0.2,
    "ETH/BTC": 0.2,
}
_DEFAULT_LOADING = 0.5

# Crypto default (docs/realism.md): GARCH with a 12 h half-life and c = ξ²/2κ
# = 0.3, times two long-memory log-variance components (30 min, σ 0.3, falls
# counting more than rises with ℓ = 0.3; 14 days, σ 0.45), so ACF(|r|) decays
# roughly as a power law from minutes to days; about one jump a week, mostly
# down (μ_J = −0.8 %, σ_J = 0.8 %, 2.6 % of BTC's variance), for the negative
# skew of crypto returns; a daily rhythm of 2× (A = 1/3) peaking at 15:00 UTC,
# weekends at 80 %.
_CRYPTO = {
    "tail_dof": 5.0,
    "jump_intensity": 50.0,
    "jump_mean": -0.008,
    "jump_std": 0.008,
    "vol_clustering": 0.3,
    "vol_half_life_hours": 12.0,
    "vol_fast_dispersion": 0.3,
    "vol_fast_half_life_hours": 0.5,
    "vol_fast_asymmetry": 0.3,
    "vol_slow_dispersion": 0.45,
    "vol_slow_half_life_hours": 336.0,
    "rhythm_amplitude": 1.0 / 3.0,
    "rhythm_peak_hour": 15.0,
    "weekend_activity": 0.8,
}
PRESETS: dict[str, dict[str, float]] = {
    "gbm": {},
    "merton": {"jump_intensity": 50.0, "jump_std": 0.01},
    "garch": _CRYPTO,
    "ou": {"tail_dof": 6.0, "reversion_half_life_hours": STABLECOIN_HALF_LIFE_HOURS},
}


def ou_volatility(daily_sigma: float, half_life_hours: float) -> float:
    """The OU diffusion σ (yearly) whose one-day log changes have std ``daily_sigma``.

    For OU, ``Var(x_{t+T} − x_t) = σ²(1 − e^{−κT})/κ``.
    """
    kappa = math.log(2.0) * HOURS_PER_YEAR / half_life_hours
    day = 1.0 / 365.0
    return daily_sigma * math.sqrt(kappa / (1.0 - math.exp(-kappa * day)))


def _preset(name: str, spec: SymbolSpec) -> dict[str, Any]:
    params: dict[str, Any] = dict(PRESETS[name])
    if name == "ou":
        params["mean_level"] = spec.seed_price
        params["volatility"] = ou_volatility(
            spec.annual_volatility / math.sqrt(365.0), STABLECOIN_HALF_LIFE_HOURS
        )
    else:
        params["volatility"] = spec.annual_volatility
        params["factor_loading"] = _LOADINGS.get(spec.key, _DEFAULT_LOADING)
    return params


def _default_preset(spec: SymbolSpec) -> str:
    return "ou" if spec.base in STABLECOINS else "garch"


def default_model(spec: SymbolSpec) -> PriceModel:
    """The calibrated default model of ``spec``'s symbol."""
    return PriceModel(**_preset(_default_preset(spec), spec))


def model_for(spec: SymbolSpec, config: ModelConfig | None = None) -> PriceModel:
    """``spec``'s model: the default, then the ``"*"`` and the symbol's own overrides.

    Raises :class:`~mdactors.domain.models.ModelError` if the result is invalid.
    """
    config = config or {}
    layers = [config.get("*", {}), config.get(spec.key, {})]
    preset = _default_preset(spec)
    for layer in layers:
        preset = layer.get("model", preset)
    params = _preset(preset, spec)
    for layer in layers:
        params.update({name: float(value) for name, value in layer.items() if name != "model"})
    return PriceModel(**params)


def _check_entry(where: str, entry: Any) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object of model parameters")
    for name, value in entry.items():
        if name == "model":
            if value not in PRESETS:
                raise ValueError(f"{where}.model: expected one of {', '.join(PRESETS)}")
        elif name not in _FIELDS:
            raise ValueError(
                f"{where}.{name}: unknown parameter (known: {', '.join(sorted(_FIELDS))})"
            )
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{where}.{name}: expected a number")
    return entry


def parse_model_config(text: str) -> dict[str, dict[str, Any]]:
    """Parse and validate ``MODEL_CONFIG`` JSON (empty = no overrides).

    Symbols are normalised to their keys. Each entry is checked by building
    its model (``"*"`` against BTC/USD and USDT/USD), so a bad value fails at
    start-up with a message naming the symbol and parameter.
    """
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"invalid JSON: {error}") from None
    if not isinstance(raw, dict):
        raise ValueError('expected a JSON object such as {"BTC/USD": {"model": "gbm"}}')
    config: dict[str, dict[str, Any]] = {}
    for symbol, entry in raw.items():
        try:
            key = symbol if symbol == "*" else normalize_symbol(symbol)
        except SymbolError as error:
            raise ValueError(str(error)) from None
        config[key] = _check_entry(key, entry)
    for key in config:
        for spec in [spec_for("BTC/USD"), spec_for("USDT/USD")] if key == "*" else [spec_for(key)]:
            try:
                model_for(spec, config)
            except ModelError as error:
                raise ValueError(f"{key}: {error}") from None
    return config
