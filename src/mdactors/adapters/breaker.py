"""A circuit breaker for one outside dependency (Redis, the configuration service, PostgreSQL).

Closed: calls go through; ``failure_threshold`` consecutive failures open it.
Open: callers should not try (fail fast, serve what they have) until
``reset_timeout`` has passed; then it is half-open. Half-open: a trial call
goes through; its success closes the breaker, its failure opens it again for
another ``reset_timeout``.

The breaker does no I/O and never sleeps: callers ask :meth:`allow` before a
call and report the outcome with :meth:`record_success` /
:meth:`record_failure`. The clock is injectable (seconds, monotonic), so the
transitions are tested without waiting.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum

__all__ = ["BreakerState", "CircuitBreaker"]

log = logging.getLogger("mdactors.breaker")


class BreakerState(Enum):
    """The three states, with the gauge value each is exported as."""

    CLOSED = "closed"
    HALF_OPEN = "half_open"
    OPEN = "open"

    @property
    def gauge(self) -> int:
        """0 closed, 1 half-open, 2 open (the ``market_data_circuit_breaker_state`` value)."""
        return _GAUGE[self]


_GAUGE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class CircuitBreaker:
    """Consecutive-failure breaker for the dependency called ``name``.

    ``name`` is a metric label value, so it must come from a fixed set
    (``redis``, ``config_service``, ``postgres``). Not thread-safe: use it from the event
    loop (report outcomes after ``trio.to_thread.run_sync`` returns).
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 5,
        reset_timeout: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be at least 1, got {failure_threshold}")
        if reset_timeout <= 0:
            raise ValueError(f"reset_timeout must be positive, got {reset_timeout}")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker turns half-open once its timeout passed)."""
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_timeout:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        """Failures reported since the last success."""
        return self._failures

    def allow(self) -> bool:
        """Whether a call may be tried now (closed, or half-open for a trial)."""
        return self.state is not BreakerState.OPEN

    def retry_in(self) -> float:
        """Seconds until an open breaker turns half-open; 0 when a call is allowed now."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        assert self._opened_at is not None
        return max(0.0, self._opened_at + self.reset_timeout - self._clock())

    def record_success(self) -> None:
        """A call succeeded: close the breaker and forget past failures."""
        if self._opened_at is not None:
            log.info(
                "circuit breaker closed",
                extra={"event": "breaker_closed", "dependency": self.name},
            )
        self._failures = 0
        self._opened_at = None

    def record_failure(self) -> None:
        """A call failed: open after the threshold, or again after a failed trial."""
        self._failures += 1
        half_open = self.state is BreakerState.HALF_OPEN
        if half_open or (self._opened_at is None and self._failures >= self.failure_threshold):
            if not half_open:
                log.warning(
                    "circuit breaker opened",
                    extra={
                        "event": "breaker_opened",
                        "dependency": self.name,
                        "failures": self._failures,
                    },
                )
            self._opened_at = self._clock()
