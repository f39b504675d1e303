"""The circuit breaker's transitions, driven by an injected clock."""

from __future__ import annotations

import pytest

from mdactors.adapters.breaker import BreakerState, CircuitBreaker
from mdactors.adapters.metrics import Metrics


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def failing(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        breaker.record_failure()


def test_stays_closed_below_the_threshold(clock: FakeClock) -> None:
    breaker = CircuitBreaker("redis", 5, 30.0, clock=clock)
    failing(breaker, 4)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.consecutive_failures == 4


def test_a_success_resets_the_failure_count(clock: FakeClock) -> None:
    breaker = CircuitBreaker("redis", 5, 30.0, clock=clock)
    failing(breaker, 4)
    breaker.record_success()
    failing(breaker, 4)
    assert breaker.state is BreakerState.CLOSED


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = CircuitBreaker("redis", 5, 30.0, clock=clock)
    failing(breaker, 5)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    assert breaker.retry_in() == pytest.approx(30.0)


def test_turns_half_open_after_the_timeout(clock: FakeClock) -> None:
    breaker = CircuitBreaker("redis", 5, 30.0, clock=clock)
    failing(breaker, 5)
    clock.now += 29.9
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()
    assert breaker.retry_in() == 0.0


def test_half_open_success_closes(clock: FakeClock) -> None:
    breaker = CircuitBreaker("redis", 5, 30.0, clock=clock)
    failing(breaker, 5)
    clock.now += 30.0
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0
    failing(breaker, 4)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_failure_reopens_for_a_full_timeout(clock: FakeClock) -> None:
    breaker = CircuitBreaker("redis", 5, 30.0, clock=clock)
    failing(breaker, 5)
    clock.now += 45.0
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_in() == pytest.approx(30.0)
    clock.now += 30.0
    assert breaker.state is BreakerState.HALF_OPEN


def test_rejects_a_threshold_below_one() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("redis", 0)


async def test_state_is_exported_per_dependency(clock: FakeClock) -> None:
    metrics = Metrics("svc", "svc", "0")
    breaker = CircuitBreaker("redis", 1, 30.0, clock=clock)
    metrics.watch_breaker(breaker)
    assert b'market_data_circuit_breaker_state{dependency="redis"} 0.0' in await metrics.render()
    breaker.record_failure()
    assert b'market_data_circuit_breaker_state{dependency="redis"} 2.0' in await metrics.render()
    clock.now += 30.0
    assert b'market_data_circuit_breaker_state{dependency="redis"} 1.0' in await metrics.render()
