"""The old service's README chaos bodies, character for character, and what each does.

The six bodies are POSTed exactly as its README's curl commands send them
(``curl -d`` without a content type) to a service on default settings. What
they do to the market is measured by starting the same bodies (through the
same translation the routes use) on a seeded market under trio's autojump
clock, so a 36-hour depeg or a 14-hour divergence plays out in a second.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pytest
import trio
import trio.testing

from mdactors.api.admin.chaos_orders import ORDERS, Limits, start_order
from mdactors.engine.market import Market
from mdactors.engine.scenarios import ScenarioEngine
from tests.conftest import running_service, wait_for

PRICE_SHOCK = '{"symbol":"BTC-USD","shock_percentage":-15.0,"duration_seconds":300,"pattern":"sudden_drop","recovery_time_seconds":1800}'  # noqa: E501
STABLECOIN_DEPEG = '{"symbol":"USDT-USD","target_deviation":-0.05,"duration_hours":36,"pattern":"gradual_linear","volatility_increase":10.0}'  # noqa: E501
GRADUAL_DIVERGENCE = '{"base_symbol":"BTC-USD","target_symbol":"BTC-USD-PERP","max_spread_bps":500,"buildup_hours":4,"sustain_hours":8,"recovery_hours":2}'  # noqa: E501
FEED_DISRUPTION = '{"source":"coingecko","packet_loss_percentage":20,"latency_ms":2000,"duration_seconds":3600,"affect_symbols":["BTC-USD","ETH-USD"]}'  # noqa: E501
MARKET_CRASH = '{"crash_percentage":-15.0,"crash_duration_minutes":30,"symbols":["BTC-USD","ETH-USD","BTC-ETH"],"correlation_increase":0.95,"volume_spike_multiplier":5.0,"recovery_pattern":"slow_bounce"}'  # noqa: E501
VOLATILITY_SPIKE = '{"symbol":"BTC-USD","volatility_multiplier":10.0,"duration_hours":2,"pattern":"random_walk","preserve_trend":true}'  # noqa: E501

BODIES = {
    "price-shock": PRICE_SHOCK,
    "stablecoin-depeg": STABLECOIN_DEPEG,
    "gradual-divergence": GRADUAL_DIVERGENCE,
    "feed-disruption": FEED_DISRUPTION,
    "market-crash": MARKET_CRASH,
    "volatility-spike": VOLATILITY_SPIKE,
}

# (started → full strength, started → recovery starts, started → over), in seconds
TIMELINES = {
    "price-shock": (0, 300, 2100),
    "stablecoin-depeg": (36 * 3600, 36 * 3600, 36 * 3600 + 30),
    "gradual-divergence": (4 * 3600, 12 * 3600, 14 * 3600),
    "feed-disruption": (0, 3600, 3600),
    "market-crash": (1800, 1800, 3600),
    "volatility-spike": (0, 7200, 7230),
}


def _seconds_between(start: str, end: str) -> float:
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


async def test_the_six_bodies_are_accepted_as_curl_sends_them() -> None:
    async with running_service({"DRAIN_DELAY": "0s"}) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            before = service.context.market.latest("BTC/USD").price
            for path, body in BODIES.items():
                response = await client.post(
                    f"/chaos/{path}",
                    content=body,
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                assert response.status_code == 201, (path, response.text)
                view = response.json()
                started = view["started_at"]
                timeline = tuple(
                    round(_seconds_between(started, view[field]))
                    for field in ("full_strength_at", "recovery_starts_at", "ends_at")
                )
                assert timeline == TIMELINES[path], path
                assert _parameters(body).items() <= view["parameters"].items(), "as asked"
            market = service.context.market
            # The price shock is sudden: the very next BTC tick is 15 % down (the other
            # scenarios ramp, or do not move BTC at once).
            await wait_for(lambda: market.latest("BTC/USD").price < before * 0.9)
            assert market.latest("BTC/USD").price / before == pytest.approx(0.85, abs=0.02)
            sources = (await client.get("/debug/data-sources/status")).json()
    btc = sources["symbols"]["BTC/USD"]
    assert {s["name"] for s in btc["sources"]} == {"simulator", "coingecko"}
    (coingecko,) = [s for s in btc["sources"] if s["name"] == "coingecko"]
    assert coingecko["disruption"]["latency_ms"] == 2000
    assert coingecko["disruption"]["packet_loss_percentage"] == 20


def _parameters(body: str) -> dict[str, Any]:
    return json.loads(body)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("price-shock", PRICE_SHOCK.replace("sudden_drop", "sideways"), "pattern"),
        ("price-shock", PRICE_SHOCK.replace("-15.0", "15.0"), "pattern"),
        ("market-crash", MARKET_CRASH.replace("slow_bounce", "bounce"), "recovery_pattern"),
        ("volatility-spike", VOLATILITY_SPIKE.replace("random_walk", "wobble"), "pattern"),
        ("stablecoin-depeg", STABLECOIN_DEPEG.replace('"duration_hours":36',
         '"duration_hours":36,"duration_seconds":60'), "duration_hours"),
        ("market-crash", MARKET_CRASH.replace('"crash_percentage":-15.0',
         '"crash_percentage":-15.0,"shock_percentage":-20'), "crash_percentage"),
        ("gradual-divergence", GRADUAL_DIVERGENCE.replace("}", ',"duration_hours":5}'),
         "sustain_seconds"),
        ("feed-disruption", FEED_DISRUPTION.replace("coingecko", "coin gecko"), "source"),
        ("stablecoin-depeg", STABLECOIN_DEPEG.replace("10.0", "0.5"), "volatility_increase"),
        ("volatility-spike", VOLATILITY_SPIKE.replace("true", '"yes"'), "preserve_trend"),
        ("price-shock", PRICE_SHOCK.replace("}", ',"pattern_name":"x"}'), "pattern_name"),
    ],
)  # fmt: skip
async def test_bad_values_of_the_new_fields_are_422s_naming_them(
    path: str, body: str, field: str
) -> None:
    async with running_service() as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            response = await client.post(f"/chaos/{path}", content=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    if field in ("pattern", "recovery_pattern") and "needs" not in response.text:
        assert (
            "slow_bounce" in response.text
            or "gradual_linear" in response.text
            or ("random_walk" in response.text)
        ), "an unknown pattern lists the allowed ones"


async def test_a_body_labelled_as_protobuf_is_415() -> None:
    async with running_service() as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            response = await client.post(
                "/chaos/price-shock",
                content=PRICE_SHOCK,
                headers={"Content-Type": "application/proto"},
            )
    assert response.status_code == 415
    assert response.json()["error"] == "unsupported_media_type"


# -- what each body does, on a market under the autojump clock ---------------------------

SYMBOLS = ["BTC/USD", "ETH/USD", "USDT/USD", "BTC/ETH", "BTC/USD-PERP"]
Sample = dict[str, tuple[float, float]]  # key -> (price, volume of the tick)


async def _play(
    bodies: Sequence[tuple[str, str]],
    *,
    seconds: float,
    interval: float,
    seed: int = 5,
    warmup: float = 0.0,
    symbols: Sequence[str] = SYMBOLS,
) -> list[tuple[float, Sample]]:
    """Run a seeded market for ``warmup`` s, start ``bodies``, run ``seconds`` more;
    every tick's ``(time since the start, {symbol: (price, volume)})``."""
    market = Market(list(symbols), interval, seed=seed)
    engine = ScenarioEngine(market)
    limits = Limits(0.5, 48 * 3600.0)
    crashable = [k for k in market.symbols if market.actor(k).model.kind != "ou"]
    samples: list[tuple[float, Sample]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        await trio.sleep(interval / 2)
        began = trio.current_time() + warmup
        started = False
        while trio.current_time() < began + seconds:
            now = trio.current_time()
            if not started and now >= began:
                for path, body in bodies:
                    model, make = ORDERS[path]
                    extra = (crashable,) if path == "market-crash" else ()
                    order = make(
                        model.model_validate_json(body), lambda _, raw: market.resolve(raw),
                        limits, *extra,
                    )  # fmt: skip
                    start_order(order, engine)
                started = True
            samples.append(
                (
                    now - began,
                    {k: (market.latest(k).price, market.latest(k).volume) for k in symbols},
                )
            )
            await trio.sleep(interval)
        nursery.cancel_scope.cancel()
    return samples


def _at(samples: list[tuple[float, Sample]], t: float, key: str) -> float:
    return min(samples, key=lambda sample: abs(sample[0] - t))[1][key][0]


def _returns(
    samples: list[tuple[float, Sample]], key: str, when: Callable[[float], bool]
) -> np.ndarray:
    prices = np.array([sample[key][0] for t, sample in samples if when(t)])
    return np.diff(np.log(prices))


async def test_price_shock_drops_at_once_holds_and_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    samples = await _play([("price-shock", PRICE_SHOCK)], seconds=2400, interval=1.0, warmup=5)
    before = _at(samples, -1, "BTC/USD")
    assert _at(samples, 1, "BTC/USD") / before == pytest.approx(0.85, abs=0.02)
    assert _at(samples, 290, "BTC/USD") / before == pytest.approx(0.85, abs=0.03)
    assert _at(samples, 2300, "BTC/USD") / before == pytest.approx(1.0, abs=0.04)


async def test_depeg_is_a_straight_line_to_minus_5_percent_with_ten_times_the_volatility(
    autojump_clock: trio.testing.MockClock,
) -> None:
    samples = await _play(
        [("stablecoin-depeg", STABLECOIN_DEPEG)], seconds=36 * 3600, interval=60.0, warmup=7200
    )
    assert _at(samples, 18 * 3600, "USDT/USD") == pytest.approx(0.975, abs=0.004)
    assert _at(samples, 36 * 3600 - 60, "USDT/USD") == pytest.approx(0.95, abs=0.005)
    calm = _returns(samples, "USDT/USD", lambda t: t < 0).std()
    late = _returns(samples, "USDT/USD", lambda t: t > 30 * 3600).std()
    # level 0.83..1 over those hours: volatility 8.5..10 times normal
    assert 6.0 < late / calm < 13.0


async def test_divergence_takes_the_perpetual_500_bp_from_its_spot_and_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    samples = await _play(
        [("gradual-divergence", GRADUAL_DIVERGENCE)], seconds=15 * 3600, interval=60.0
    )

    def spread_bp(t: float) -> float:
        return (_at(samples, t, "BTC/USD-PERP") / _at(samples, t, "BTC/USD") - 1) * 10_000

    assert abs(spread_bp(0)) < 20, "the basis, before"
    assert spread_bp(2 * 3600) == pytest.approx(250, abs=40), "half way through the buildup"
    for hour in (4.5, 8, 11.5):
        assert spread_bp(hour * 3600) == pytest.approx(500, abs=25), "sustained"
    assert abs(spread_bp(14.5 * 3600)) < 25, "recovered"


async def test_feed_disruption_loses_a_fifth_of_the_ticks_of_the_affected_symbols(
    autojump_clock: trio.testing.MockClock,
) -> None:
    market_symbols = ["BTC/USD", "ETH/USD", "SOL/USD"]
    market = Market(market_symbols, 1.0, seed=3)
    engine = ScenarioEngine(market)
    model, make = ORDERS["feed-disruption"]
    order = make(
        model.model_validate_json(FEED_DISRUPTION),
        lambda _, raw: market.resolve(raw),
        Limits(0.5, 48 * 3600.0),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(market.run)
        published = {k: market.actor(k).topic.published for k in market_symbols}
        start_order(order, engine)
        await trio.sleep(3000)
        delivered = {
            k: (market.actor(k).topic.published - published[k]) / 3000 for k in market_symbols
        }
        nursery.cancel_scope.cancel()
    assert delivered["BTC/USD"] == pytest.approx(0.8, abs=0.04)
    assert delivered["ETH/USD"] == pytest.approx(0.8, abs=0.04)
    assert delivered["SOL/USD"] == pytest.approx(1.0, abs=0.01)


async def test_market_crash_falls_together_with_correlation_and_volume_then_bounces(
    autojump_clock: trio.testing.MockClock,
) -> None:
    samples = await _play([("market-crash", MARKET_CRASH)], seconds=3700, interval=1.0,
                          warmup=3600)  # fmt: skip
    for key in ("BTC/USD", "ETH/USD", "BTC/ETH"):
        assert _at(samples, 1800, key) / _at(samples, -1, key) == pytest.approx(0.85, abs=0.04)

    # Return correlation before and at the crash's peak (level > 0.8), and with a lower ask.
    def corr(samples: list[tuple[float, Sample]], when: Callable[[float], bool]) -> float:
        btc, eth = (_returns(samples, k, when) for k in ("BTC/USD", "ETH/USD"))
        return float(np.corrcoef(btc, eth)[0, 1])

    peak = lambda t: 1500 < t < 1800  # noqa: E731
    before, during = corr(samples, lambda t: t < 0), corr(samples, peak)
    assert during > 0.95 and during > before + 0.2, (before, during)
    milder_body = MARKET_CRASH.replace('"correlation_increase":0.95', '"correlation_increase":0.5')
    milder = await _play([("market-crash", milder_body)], seconds=1800, interval=1.0, warmup=3600)
    assert corr(milder, peak) < during - 0.1

    def volume(when: Callable[[float], bool]) -> float:
        return float(np.mean([s["BTC/USD"][1] for t, s in samples if when(t)]))

    assert volume(lambda t: 1600 < t < 1800) / volume(lambda t: t < 0) == pytest.approx(5, abs=1)
    # slow_bounce: a quick first bounce, half of the fall back within 29 % of the recovery.
    low, then = _at(samples, 1800, "BTC/USD"), _at(samples, 1800 + 0.29 * 1800, "BTC/USD")
    start = _at(samples, -1, "BTC/USD")
    assert (then - low) / (start - low) == pytest.approx(0.5, abs=0.15)


_PAIR = ["BTC/USD", "ETH/USD"]


def _minute_volatility(samples: list[tuple[float, Sample]], when: Callable[[float], bool]) -> float:
    returns = _returns(samples, "BTC/USD", when)
    return float(np.add.reduceat(returns, np.arange(0, len(returns), 12)).std())  # 5 s ticks


async def test_volatility_spike_is_ten_times_and_preserve_trend_keeps_the_models_path(
    autojump_clock: trio.testing.MockClock,
) -> None:
    kept, loose = [], []
    for seed in range(3):
        options: dict[str, Any] = {"interval": 5.0, "seed": seed, "warmup": 3600, "symbols": _PAIR}
        plain = await _play([], seconds=7300, **options)
        spiked = await _play([("volatility-spike", VOLATILITY_SPIKE)], seconds=7300, **options)
        # Against the same window of the same seed without the spike: the model's own
        # (GARCH) volatility cancels out, and with it most of the sampling noise.
        window = lambda t: 600 < t < 7000  # noqa: E731
        ratio = _minute_volatility(spiked, window) / _minute_volatility(plain, window)
        assert 7.0 < ratio < 14.0, ratio
        wandering = await _play(
            [("volatility-spike", VOLATILITY_SPIKE.replace("true", "false"))],
            seconds=7300, **options,
        )  # fmt: skip
        model = _at(plain, 7100, "BTC/USD")
        kept.append(abs(math.log(_at(spiked, 7100, "BTC/USD") / model)))
        loose.append(abs(math.log(_at(wandering, 7100, "BTC/USD") / model)))
    # With the trend kept the price stays near the model's path (OU, σ ≈ 1.3 %); without,
    # the extra moves add up over two hours (σ ≈ 7.5 %).
    assert max(kept) < 0.05, kept
    assert float(np.median(loose)) > 2 * float(np.median(kept)), (kept, loose)


async def test_random_walk_spike_decouples_the_symbol_and_amplify_does_not(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def corr(samples: list[tuple[float, Sample]]) -> float:
        when = lambda t: 300 < t < 7000  # noqa: E731
        btc, eth = (_returns(samples, k, when) for k in ("BTC/USD", "ETH/USD"))
        return float(np.corrcoef(btc, eth)[0, 1])

    options: dict[str, Any] = {"seconds": 7200, "interval": 5.0, "symbols": _PAIR}
    walk = await _play([("volatility-spike", VOLATILITY_SPIKE)], **options)
    amplified = await _play(
        [("volatility-spike", VOLATILITY_SPIKE.replace("random_walk", "amplify"))], **options
    )
    plain = await _play([], **options)
    assert corr(amplified) == pytest.approx(corr(plain), abs=0.1)
    assert corr(walk) < corr(plain) - 0.2
