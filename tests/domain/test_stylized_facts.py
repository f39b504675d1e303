"""The realism guarantees: the default BTC model shows the stylized facts, plain GBM does not."""

from __future__ import annotations

import numpy as np
import pytest

from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import default_model
from mdactors.domain.models import GBM, SECONDS_PER_YEAR, PriceModel
from mdactors.domain.similarity import ks_distance, similarity
from mdactors.domain.stylized import (
    RealismReport,
    acf,
    aggregate,
    check_realism,
    excess_kurtosis,
    hill_tail_index,
    log_returns,
    robust_acf_se,
)
from mdactors.domain.symbols import spec_for

MINUTE = 60.0 / SECONDS_PER_YEAR
STEPS = 120_000  # one-minute returns, ~83 days
BTC = default_model(spec_for("BTC/USD"))


def _minute_returns(model: PriceModel, seed: int, steps: int = STEPS) -> np.ndarray:
    prices = model.path(43_000.0, MINUTE, steps, np.random.default_rng(seed), MarketFactor(seed))
    return log_returns(prices)


@pytest.fixture(scope="module")
def btc() -> RealismReport:
    return check_realism(_minute_returns(BTC, seed=2024))


@pytest.fixture(scope="module")
def gbm() -> RealismReport:
    return check_realism(_minute_returns(GBM(0.5), seed=2024))


def test_btc_one_minute_returns_have_fat_tails(btc: RealismReport) -> None:
    assert btc.count >= 100_000
    assert btc.kurtosis[1] > 1.0
    assert 2.0 < btc.hill_alpha < 5.0


def test_btc_returns_are_uncorrelated_within_three_robust_standard_errors(
    btc: RealismReport,
) -> None:
    assert np.all(np.abs(btc.acf_returns[:10]) < 3.0 * btc.acf_se[:10])


def test_btc_absolute_returns_are_autocorrelated(btc: RealismReport) -> None:
    assert np.all(btc.acf_abs[:5] > 0.05)
    assert btc.acf_abs[19] > 0.05  # and the memory lasts beyond 20 minutes


def test_btc_kurtosis_fades_with_aggregation(btc: RealismReport) -> None:
    assert btc.kurtosis[1] > btc.kurtosis[60]


def test_btc_passes_every_realism_check(btc: RealismReport) -> None:
    assert btc.realistic, btc.failures


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_btc_fat_tails_and_clustering_hold_across_seeds(seed: int) -> None:
    report = check_realism(_minute_returns(BTC, seed, 100_000))
    assert report.kurtosis[1] > 1.0 and report.kurtosis[1] > report.kurtosis[60]
    assert np.all(report.acf_abs[:5] > 0.05)


def test_plain_gbm_fails_the_realism_checks(gbm: RealismReport) -> None:
    assert not gbm.realistic
    assert abs(gbm.kurtosis[1]) < 0.2
    assert not gbm.kurtosis[1] > 1.0
    assert not np.all(gbm.acf_abs[:5] > 0.05)
    assert any("excess kurtosis" in failure for failure in gbm.failures)
    assert any("ACF(|r|" in failure for failure in gbm.failures)


def test_stablecoin_returns_are_not_a_random_walk() -> None:
    usdt = default_model(spec_for("USDT/USD"))
    prices = usdt.path(1.0, MINUTE, STEPS, np.random.default_rng(5))
    hourly = aggregate(log_returns(prices), 60)
    assert acf(hourly, 1)[0] < -0.01  # mean reversion: moves partly undo themselves


def test_robust_standard_errors_widen_under_volatility_clustering() -> None:
    returns = _minute_returns(BTC, seed=9, steps=50_000)
    naive = 1.0 / np.sqrt(len(returns))
    assert np.all(robust_acf_se(returns, 10) > naive)
    gaussian = np.random.default_rng(0).standard_normal(50_000)
    np.testing.assert_allclose(robust_acf_se(gaussian, 10), naive, rtol=0.05)


def test_statistics_on_known_distributions() -> None:
    rng = np.random.default_rng(0)
    assert abs(excess_kurtosis(rng.standard_normal(200_000))) < 0.05
    assert excess_kurtosis(rng.random(200_000)) == pytest.approx(-1.2, abs=0.02)
    assert hill_tail_index(rng.standard_t(3, 200_000), 0.005) == pytest.approx(3.0, abs=0.4)
    ar = np.zeros(100_000)
    noise = rng.standard_normal(100_000)
    for t in range(1, len(ar)):
        ar[t] = 0.5 * ar[t - 1] + noise[t]
    assert acf(ar, 2) == pytest.approx([0.5, 0.25], abs=0.02)
    assert aggregate(np.arange(10.0), 3).tolist() == [3.0, 12.0, 21.0]


def _gbm_prices(seed: int, volatility: float = 0.5, steps: int = 2_000) -> np.ndarray:
    return GBM(volatility).path(100.0, MINUTE, steps, np.random.default_rng(seed))


def test_identical_series_are_fully_similar() -> None:
    prices = _gbm_prices(1)
    metrics = similarity(prices, prices)
    assert metrics.correlation_coefficient == pytest.approx(1.0)
    assert metrics.volatility_similarity == pytest.approx(1.0)
    assert metrics.return_distribution_similarity == 1.0
    assert metrics.trend_similarity == 1.0
    assert metrics.confidence_score == pytest.approx(1.0)


def test_unrelated_series_score_lower() -> None:
    reference = _gbm_prices(1)
    same = similarity(reference, reference).confidence_score
    unrelated = similarity(reference, _gbm_prices(2))
    calmer = similarity(reference, _gbm_prices(2, volatility=0.1))
    stable = similarity(
        reference,
        default_model(spec_for("USDT/USD")).path(1.0, MINUTE, 1_999, np.random.default_rng(3)),
    )
    assert unrelated.confidence_score < same - 0.1
    assert calmer.volatility_similarity == pytest.approx(0.2, abs=0.02)
    assert calmer.return_distribution_similarity < unrelated.return_distribution_similarity
    assert stable.confidence_score < unrelated.confidence_score
    for metrics in (unrelated, calmer, stable):
        assert 0.0 <= metrics.confidence_score <= 1.0


def test_similarity_follows_scale_free_shape_and_resamples_lengths() -> None:
    prices = _gbm_prices(4)
    doubled = similarity(prices, 2.0 * prices)
    assert doubled.correlation_coefficient == pytest.approx(1.0)
    assert doubled.volatility_similarity == pytest.approx(1.0)
    assert similarity(prices, prices[::2]).correlation_coefficient > 0.99
    with pytest.raises(ValueError, match="three"):
        similarity(prices[:2], prices[:2])
    with pytest.raises(ValueError, match="positive"):
        similarity(prices, -prices)


def test_ks_distance() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(5_000), rng.standard_normal(5_000)
    assert ks_distance(a, a) == 0.0
    assert ks_distance(a, b) < 0.03
    assert ks_distance(a, b + 1.0) == pytest.approx(0.38, abs=0.03)
    assert ks_distance(a, a + 100.0) == 1.0
