"""Event-loop lag: how late a task that asked to wake at a deadline actually wakes.

Every piece of the service shares one trio loop, so a handler that computes
too long between checkpoints delays every tick, stream and request. The
monitor sleeps until an absolute deadline every ``interval`` seconds and
records how far past it it woke up: on an idle loop a few hundred
microseconds (the scheduler's own cost), under load the time other tasks
held the loop. It keeps the latest sample and the largest one of the last
``window`` seconds, both updated on the loop and read (as plain floats) by
the Prometheus exposition in its worker thread and by ``/api/v1/listeners``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import trio
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LoopLag"]


class LoopLag(Collector):
    """Samples the event loop's wake-up lag; exposes ``market_data_event_loop_lag_*``."""

    def __init__(self, interval: float = 0.25, window: float = 10.0) -> None:
        self.interval = interval
        self.window = window
        self.last = 0.0
        """Lag of the latest sample, seconds."""
        self.recent_max = 0.0
        """Largest lag within the last ``window`` seconds."""
        self.samples = 0
        self._recent: deque[float] = deque(maxlen=max(1, round(window / interval)))

    def record(self, lag: float) -> None:
        """Count one sample of ``lag`` seconds."""
        lag = max(0.0, lag)
        self._recent.append(lag)
        self.last = lag
        self.recent_max = max(self._recent)
        self.samples += 1

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample forever (until cancelled)."""
        task_status.started()
        deadline = trio.current_time()
        while True:
            deadline = max(deadline + self.interval, trio.current_time())
            await trio.sleep_until(deadline)
            self.record(trio.current_time() - deadline)

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "market_data_event_loop_lag_seconds",
            "How late the latest scheduled wake-up of the event loop was.",
            value=self.last,
        )
        yield GaugeMetricFamily(
            "market_data_event_loop_lag_max_seconds",
            f"Largest event-loop lag within the last {self.window:g} s.",
            value=self.recent_max,
        )
