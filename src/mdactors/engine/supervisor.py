"""Lifecycle of the service: start children in order, serve, drain on a signal.

Drain, in order: the phase turns DRAINING (readiness 503, health
NOT_SERVING) so load balancers stop routing here; after ``drain_delay`` the
``draining`` event fires: listeners stop accepting and every open stream is
told to end; once the listeners have finished (or ``shutdown_timeout``
passed) the remaining children (the actors) are cancelled. Everything runs in
one nursery owned here.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

import trio

from mdactors.engine.restarts import RestartBudget, keep_running
from mdactors.engine.subscription import StreamRegistry

__all__ = ["Child", "Lifecycle", "Phase", "Supervisor"]

log = logging.getLogger("mdactors.supervisor")

_REPEAT_WINDOW_S = 1.0
"""How long after a stop signal a repeat of it is taken as the same stop."""


class Phase(Enum):
    """Where the service is in its life."""

    STARTING = "starting"
    SERVING = "serving"
    DRAINING = "draining"
    STOPPED = "stopped"


class Lifecycle:
    """The service phase, readable by health endpoints, and the drain events.

    ``drain_requested`` fires when the drain starts (phase DRAINING);
    ``draining`` fires when listeners must stop accepting and streams end.
    """

    def __init__(self) -> None:
        self.phase = Phase.STARTING
        self.serving_started = trio.Event()
        self.drain_requested = trio.Event()
        self.draining = trio.Event()
        self.failures: dict[str, str] = {}

    @property
    def healthy(self) -> bool:
        """False once a supervised task exhausted its restart budget."""
        return not self.failures

    def fail(self, name: str, error: BaseException) -> None:
        """Record that ``name`` is down for good (its restart budget is spent)."""
        self.failures[name] = f"{type(error).__name__}: {error}"[:200]

    @property
    def serving(self) -> bool:
        """Whether the service accepts work (not starting, not draining)."""
        return self.phase is Phase.SERVING

    def begin_drain(self) -> None:
        """Ask the supervisor to drain (idempotent)."""
        if self.phase in (Phase.STARTING, Phase.SERVING):
            self.phase = Phase.DRAINING
        self.drain_requested.set()


@dataclass(frozen=True, slots=True)
class Child:
    """A task the supervisor starts with ``nursery.start``.

    A ``listener`` returns by itself once the drain begins (a server that
    stops accepting and finishes its connections); the supervisor waits for
    listeners, then cancels the other children one by one in reverse start
    order (so start the history writer before the recorder, and discovery
    first: it deregisters last). A ``restart`` child that crashes is
    restarted within the restart budget.
    """

    name: str
    run: Callable[..., Awaitable[None]]
    listener: bool = False
    restart: bool = False


class Supervisor:
    """Starts children in order, waits for a signal or a drain request, drains."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        streams: StreamRegistry,
        shutdown_timeout: float,
        *,
        drain_delay: float = 0.0,
        handle_signals: bool = True,
        max_restarts: int = 5,
        restart_window: float = 60.0,
    ) -> None:
        self.lifecycle = lifecycle
        self.streams = streams
        self.shutdown_timeout = shutdown_timeout
        self.drain_delay = drain_delay
        self.max_restarts = max_restarts
        self.restart_window = restart_window
        self.handle_signals = handle_signals

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal received", extra={"event": "signal", "signal": signum})
                self.lifecycle.begin_drain()
                break
            # One stop often arrives twice at once (a terminal's Ctrl-C reaches the whole
            # process group, and the parent of serve --workers forwards it): swallow
            # repeats for a moment. After that a second signal stops at once.
            with trio.move_on_after(_REPEAT_WINDOW_S):
                async for _ in signals:
                    pass

    async def run(
        self,
        children: list[Child],
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``children`` until drained; returns once everything has stopped."""
        listeners_done = 0
        all_listeners_done = trio.Event()
        listener_count = sum(child.listener for child in children)

        async def run_listener(child: Child, task_status: trio.TaskStatus[object]) -> None:
            nonlocal listeners_done
            try:
                await child.run(task_status=task_status)
            finally:
                listeners_done += 1
                if listeners_done == listener_count:
                    all_listeners_done.set()

        async def run_owned(
            child: Child, scope: trio.CancelScope, done: trio.Event, task_status: trio.TaskStatus
        ) -> None:
            try:
                with scope:
                    if child.restart:
                        await keep_running(
                            child.name,
                            child.run,
                            RestartBudget(self.max_restarts, self.restart_window),
                            self.lifecycle.fail,
                            task_status=task_status,
                        )
                    else:
                        await child.run(task_status=task_status)
            finally:
                done.set()

        owned: list[tuple[Child, trio.CancelScope, trio.Event]] = []
        async with trio.open_nursery() as nursery:
            if self.handle_signals:
                nursery.start_soon(self._watch_signals)
            for child in children:
                if child.listener:
                    await nursery.start(run_listener, child)
                else:
                    scope, done = trio.CancelScope(), trio.Event()
                    await nursery.start(run_owned, child, scope, done)
                    owned.append((child, scope, done))
                log.info("started", extra={"event": "child_started", "child": child.name})
            self.lifecycle.phase = Phase.SERVING
            self.lifecycle.serving_started.set()
            log.info("serving", extra={"event": "serving"})
            task_status.started()
            await self.lifecycle.drain_requested.wait()
            log.info("draining", extra={"event": "drain_started"})
            with trio.move_on_after(self.shutdown_timeout) as scope:
                await trio.sleep(min(self.drain_delay, self.shutdown_timeout / 2))
                self.lifecycle.draining.set()
                self.streams.stop_all()
                if listener_count:
                    await all_listeners_done.wait()
            if scope.cancelled_caught:
                log.warning("drain deadline passed", extra={"event": "drain_timeout"})
            with trio.move_on_after(self.shutdown_timeout):
                for child, child_scope, done in reversed(owned):
                    child_scope.cancel()
                    await done.wait()
                    log.info("stopped", extra={"event": "child_stopped", "child": child.name})
            nursery.cancel_scope.cancel()
        self.lifecycle.phase = Phase.STOPPED
        log.info("stopped", extra={"event": "stopped"})
