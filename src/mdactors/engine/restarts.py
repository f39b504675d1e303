"""Restart a crashed task, within a budget, so a bug cannot turn into a crash loop."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["RestartBudget", "keep_running"]

log = logging.getLogger("mdactors.supervisor")


class RestartBudget:
    """At most ``max_restarts`` restarts within any ``window`` seconds (trio clock)."""

    def __init__(self, max_restarts: int = 5, window: float = 60.0) -> None:
        self.max_restarts = max_restarts
        self.window = window
        self._restarts: deque[float] = deque()

    def allow(self) -> bool:
        """Record a restart now; ``False`` once the budget is exhausted."""
        now = trio.current_time()
        while self._restarts and now - self._restarts[0] > self.window:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            return False
        self._restarts.append(now)
        return True


class _StartedOnce:
    """A task status that forwards only the first ``started()`` (restarts start silently)."""

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self._inner = inner
        self.done = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            self._inner.started(value)


async def keep_running(
    name: str,
    run: Callable[..., Awaitable[None]],
    budget: RestartBudget,
    on_give_up: Callable[[str, BaseException], None],
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run ``run(task_status=...)``; restart it when it raises, while ``budget`` allows.

    A normal return ends supervision. Cancellation is never caught. When the
    budget is exhausted, ``on_give_up`` is told and the task stays down
    (the service then reports itself unhealthy instead of looping).
    """
    status = _StartedOnce(task_status)
    while True:
        try:
            await run(task_status=status)
            return
        except Exception as error:
            if not budget.allow():
                log.error(
                    "restart budget exhausted",
                    extra={"event": "gave_up", "child": name, "error": repr(error)},
                )
                status.started()
                on_give_up(name, error)
                return
            log.warning(
                "restarting after a crash",
                extra={"event": "restarted", "child": name, "error": repr(error)},
                exc_info=error,
            )
            await trio.sleep(0.1)  # no hot loop even within the budget
