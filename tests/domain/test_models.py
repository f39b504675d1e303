"""Price models: step and vectorised paths agree, seeds reproduce, defaults are calibrated."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from mdactors.domain.backfill import backfill_minutes
from mdactors.domain.innovations import MarketFactor, draw
from mdactors.domain.model_config import default_model, model_for, parse_model_config
from mdactors.domain.models import GBM, SECONDS_PER_YEAR, LiveProcess, ModelError, PriceModel
from mdactors.domain.stylized import log_returns
from mdactors.domain.symbols import spec_for
from mdactors.engine.market import Market
from mdactors.settings import ConfigError, load_settings

MINUTE = 60.0 / SECONDS_PER_YEAR
BTC = default_model(spec_for("BTC/USD"))
USDT = default_model(spec_for("USDT/USD"))
# Jumps every few minutes, so a short path exercises the jump branch.
JUMPY = dataclasses.replace(
    BTC, volatility=0.9, jump_intensity=100_000.0, jump_mean=0.0, jump_std=0.001
)


def _live_prices(model: PriceModel, steps: int, seed: int, dt: float = MINUTE) -> np.ndarray:
    process = LiveProcess(model, 100.0, np.random.default_rng(seed), MarketFactor(seed))
    return np.array([process.advance(dt) for _ in range(steps)])


def test_default_models_are_calibrated_per_symbol() -> None:
    assert BTC.kind == "garch"
    assert BTC.volatility == 0.5 and BTC.tail_dof >= 5 and BTC.jump_intensity > 0
    assert BTC.factor_loading > 0
    assert USDT.kind == "ou" and USDT.mean_level == 1.0 and USDT.factor_loading == 0
    assert GBM(0.5).kind == "gbm"
    assert dataclasses.replace(GBM(0.5), jump_intensity=10.0, jump_std=0.01).kind == "merton"


@pytest.mark.parametrize("model", [BTC, JUMPY, USDT, GBM(0.5)], ids=["btc", "jumpy", "ou", "gbm"])
def test_live_actor_process_equals_vectorised_path_from_the_same_seed(model: PriceModel) -> None:
    live = _live_prices(model, 3_000, seed=7)
    path = model.path(100.0, MINUTE, 3_000, np.random.default_rng(7), MarketFactor(7))
    # Log prices agree exactly; only math.exp and np.exp may round differently.
    np.testing.assert_allclose(live, path[1:], rtol=1e-15, atol=0)


def test_step_and_simulate_agree_on_the_same_shocks() -> None:
    inputs = draw(JUMPY.tail_mix, np.random.default_rng(3), 2_000)
    e = inputs.combined(MarketFactor(3).draws(0, 2_000))
    assert np.sum(inputs.u >= JUMPY.coefficients(MINUTE).no_jump) > 5
    season = JUMPY.rhythm.sigmas(np.arange(2_000, dtype=np.int64) * 60 * 10**9 * 7)
    assert JUMPY.coefficients(MINUTE).memory and len(set(season.tolist())) > 10
    vector_state, step_state = JUMPY.initial_state(50.0), JUMPY.initial_state(50.0)
    vectorised = JUMPY.simulate(vector_state, MINUTE, e, inputs.u, inputs.j, season)
    stepped = []
    for args in zip(e.tolist(), inputs.u.tolist(), inputs.j.tolist(), season.tolist(), strict=True):
        JUMPY.step(step_state, MINUTE, *args)
        stepped.append(step_state.log_price)
    np.testing.assert_array_equal(stepped, vectorised)
    assert step_state.variance == vector_state.variance
    assert (step_state.fast, step_state.slow) == (vector_state.fast, vector_state.slow)
    assert step_state.fast != 0.0 and step_state.slow != 0.0


def test_a_symbol_without_the_market_factor_keeps_its_volatility() -> None:
    # Without a factor the innovation is the symbol's own draw at full weight, not
    # its idiosyncratic part alone (which had only √(1 − ρ²) of the variance).
    returns = log_returns(BTC.path(1.0, MINUTE, 50_000, np.random.default_rng(4)))
    assert np.std(returns) * math.sqrt(365 * 1_440) == pytest.approx(0.5, rel=0.25)


def test_seeded_paths_are_reproducible_and_seeds_differ() -> None:
    first = BTC.path(43_000.0, MINUTE, 5_000, np.random.default_rng(11), MarketFactor(11))
    again = BTC.path(43_000.0, MINUTE, 5_000, np.random.default_rng(11), MarketFactor(11))
    other = BTC.path(43_000.0, MINUTE, 5_000, np.random.default_rng(12), MarketFactor(12))
    assert first.tobytes() == again.tobytes()
    assert not np.array_equal(first, other)


def test_seeded_market_runs_are_bit_reproducible() -> None:
    def run() -> list[tuple[float, float, float, float]]:
        market = Market(["BTC/USD", "ETH/USD", "USDT/USD"], 0.05, 42, wall_clock=lambda: 0)
        ticks = [market.actor(key).step() for _ in range(3_000) for key in market.symbols]
        return [(t.price, t.bid, t.ask, t.volume) for t in ticks]

    assert run() == run()


def test_market_factor_is_a_pure_function_of_the_step() -> None:
    whole = MarketFactor(5).draws(0, 3_000)
    assert np.array_equal(MarketFactor(5).draws(1_500, 100), whole[1_500:1_600])
    assert np.array_equal(MarketFactor(5).block(2)[:952], whole[2048:])
    assert not np.array_equal(MarketFactor(5, "backfill").draws(0, 100), whole[:100])
    assert abs(np.mean(whole)) < 0.1 and abs(np.std(whole) - 1.0) < 0.05


def test_common_factor_correlates_symbols_and_only_through_loadings() -> None:
    eth = default_model(spec_for("ETH/USD"))
    btc_r = log_returns(BTC.path(1.0, MINUTE, 50_000, np.random.default_rng(1), MarketFactor(9)))
    eth_r = log_returns(eth.path(1.0, MINUTE, 50_000, np.random.default_rng(2), MarketFactor(9)))
    alone = dataclasses.replace(eth, factor_loading=0.0)
    alone_r = log_returns(
        alone.path(1.0, MINUTE, 50_000, np.random.default_rng(2), MarketFactor(9))
    )
    # ρ₁ρ₂·E[w]² ≈ 0.8 · 0.8 · 0.85 for ν = 5.
    assert 0.45 < np.corrcoef(btc_r, eth_r)[0, 1] < 0.65
    assert abs(np.corrcoef(btc_r, alone_r)[0, 1]) < 0.03


def test_default_btc_volatility_is_about_50_percent_a_year() -> None:
    returns = log_returns(BTC.path(1.0, MINUTE, 400_000, np.random.default_rng(4), MarketFactor(4)))
    assert 0.42 < np.std(returns) * math.sqrt(365 * 1440) < 0.58


def test_variance_clustering_does_not_depend_on_the_tick_interval() -> None:
    one_second, one_minute = BTC.coefficients(1.0 / SECONDS_PER_YEAR), BTC.coefficients(MINUTE)
    persistence = one_second.alpha + one_second.beta
    assert persistence**60 == pytest.approx(one_minute.alpha + one_minute.beta, rel=1e-9)
    # α scales with √dt (Nelson's limit), so the variance of h's shocks scales with dt.
    assert one_minute.alpha / one_second.alpha == pytest.approx(math.sqrt(60.0), rel=1e-9)


def test_ou_stablecoin_stays_near_peg_with_about_7bp_daily_sigma() -> None:
    five_minutes = 300.0 / SECONDS_PER_YEAR
    days = 1_000
    prices = USDT.path(1.0, five_minutes, days * 288, np.random.default_rng(8))
    daily = log_returns(prices[::288])
    assert 0.00060 < np.std(daily) < 0.00080
    assert np.max(np.abs(prices - 1.0)) < 0.005
    assert abs(np.mean(prices) - 1.0) < 0.0005


def test_ou_pulls_a_depegged_price_back_within_days() -> None:
    prices = USDT.path(0.98, MINUTE, 3 * 1440, np.random.default_rng(2))
    assert abs(prices[-1] - 1.0) < 0.002
    assert prices[720] == pytest.approx(0.99, abs=0.002)  # 12 h half-life


@pytest.mark.parametrize(
    "model",
    [
        PriceModel(3.0, tail_dof=5.0, vol_clustering=0.99 - 1e-9, vol_half_life_hours=0.5),
        PriceModel(2.0, jump_intensity=5_000.0, jump_mean=-0.01, jump_std=0.02, tail_dof=5.0),
        PriceModel(
            0.5, reversion_half_life_hours=0.1, tail_dof=5.0, jump_intensity=365.0, jump_std=0.01
        ),
    ],
    ids=["extreme-clustering", "extreme-jumps", "fast-ou"],
)
@pytest.mark.parametrize("dt", [1.0 / SECONDS_PER_YEAR, MINUTE, 1.0 / 365.0])
def test_prices_are_always_positive_and_finite(model: PriceModel, dt: float) -> None:
    prices = model.path(1.0, dt, 20_000, np.random.default_rng(0), MarketFactor(0))
    assert np.all(np.isfinite(prices)) and np.all(prices > 0.0)
    process = LiveProcess(model, 1.0, np.random.default_rng(0))
    live = [process.advance(dt) for _ in range(5_000)]
    assert all(math.isfinite(p) and p > 0.0 for p in live)


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"tail_dof": 4.0}, "tail_dof"),
        ({"vol_clustering": 1.0}, "vol_clustering"),
        ({"volatility": -0.1}, "volatility"),
        ({"factor_loading": 1.0}, "factor_loading"),
        ({"mean_level": 0.0}, "mean_level"),
        ({"volatility": float("nan")}, "volatility"),
    ],
)
def test_invalid_parameters_name_the_parameter(params: dict[str, float], name: str) -> None:
    with pytest.raises(ModelError, match=name):
        PriceModel(**{"volatility": 0.5, **params})


def test_model_config_overrides_layer_on_the_defaults() -> None:
    config = parse_model_config(
        '{"*": {"factor_loading": 0.3}, "btc-usd": {"model": "gbm"}, "ETH": {"volatility": 0.9}}'
    )
    btc = model_for(spec_for("BTC/USD"), config)
    assert btc.kind == "gbm" and btc.factor_loading == 0.3 and btc.tail_dof == 0
    eth = model_for(spec_for("ETH/USD"), config)
    assert eth.kind == "garch" and eth.volatility == 0.9 and eth.factor_loading == 0.3
    assert model_for(spec_for("USDT/USD"), {}).kind == "ou"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "JSON object"),
        ("{nope", "invalid JSON"),
        ('{"BTC/USD": {"model": "heston"}}', "BTC/USD.model"),
        ('{"BTC/USD": {"sigma": 1}}', "BTC/USD.sigma: unknown parameter"),
        ('{"BTC/USD": {"volatility": "high"}}', "BTC/USD.volatility: expected a number"),
        ('{"*": {"tail_dof": 3}}', "tail_dof"),
        ('{"B!TC": {}}', "malformed symbol"),
    ],
)
def test_bad_model_config_is_rejected_with_the_place(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_model_config(text)


def test_model_config_setting_reaches_the_actors() -> None:
    settings = load_settings(
        environ={"MODEL_CONFIG": '{"BTC": {"model": "merton", "jump_intensity": 10}}'},
        dotenv=None,
    )
    market = Market(["BTC/USD", "USDT/USD"], 1.0, 1, models=settings.model_config)
    assert market.actor("BTC/USD").model.kind == "merton"
    assert market.actor("BTC/USD").model.jump_intensity == 10
    assert market.actor("USDT/USD").model.kind == "ou"
    with pytest.raises(ConfigError, match="MODEL_CONFIG"):
        load_settings(environ={"MODEL_CONFIG": '{"BTC": {"tail_dof": 2}}'}, dotenv=None)


def test_backfill_uses_the_model_and_ends_at_the_live_price() -> None:
    spec = spec_for("BTC/USD")
    candles = backfill_minutes(
        spec, BTC, 43_210.5, 1_440 * 60_000, 1_440, np.random.default_rng(1), factor=MarketFactor(1)
    )
    assert len(candles) == 1_440 and candles[-1].close == 43_210.5
    closes = np.array([c.close for c in candles])
    assert np.all(closes > 0) and all(c.low <= min(c.open, c.close) for c in candles)
    daily_vol = np.std(log_returns(closes)) * math.sqrt(1_440)
    assert 0.01 < daily_vol < 0.05  # 50 %/yr ≈ 2.6 %/day
