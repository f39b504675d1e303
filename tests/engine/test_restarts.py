"""Supervision: a crashed task restarts within its budget, then the service reports unhealthy."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from mdactors.engine.restarts import RestartBudget, keep_running
from mdactors.engine.subscription import StreamRegistry
from mdactors.engine.supervisor import Child, Lifecycle, Supervisor


async def test_budget_allows_max_restarts_per_window(
    autojump_clock: trio.testing.MockClock,
) -> None:
    budget = RestartBudget(max_restarts=2, window=10.0)
    assert budget.allow() and budget.allow()
    assert not budget.allow()
    await trio.sleep(10.5)
    assert budget.allow()


async def test_crashing_task_is_restarted_then_given_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = 0
    given_up: list[str] = []

    async def flaky(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        raise RuntimeError("boom")

    async with trio.open_nursery() as nursery:
        await nursery.start(
            keep_running, "flaky", flaky, RestartBudget(3, 60.0), lambda n, e: given_up.append(n)
        )
    assert runs == 4
    assert given_up == ["flaky"]


async def test_task_that_recovers_keeps_running(autojump_clock: trio.testing.MockClock) -> None:
    runs = 0

    async def once_flaky(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        nonlocal runs
        runs += 1
        task_status.started()
        if runs == 1:
            raise RuntimeError("first run fails")

    async with trio.open_nursery() as nursery:
        await nursery.start(keep_running, "t", once_flaky, RestartBudget(), pytest.fail)
    assert runs == 2


async def test_supervisor_marks_the_service_unhealthy_when_a_child_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lifecycle = Lifecycle()

    async def broken(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(1)
        raise ValueError("bad state")

    supervisor = Supervisor(
        lifecycle, StreamRegistry(10), 5.0, handle_signals=False, max_restarts=2
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, [Child("broken", broken, restart=True)])
        await trio.sleep(10)
        assert not lifecycle.healthy
        assert "broken" in lifecycle.failures
        lifecycle.begin_drain()
    assert lifecycle.phase.value == "stopped"


async def test_children_stop_in_reverse_start_order() -> None:
    lifecycle = Lifecycle()
    stopped: list[str] = []

    def child(name: str) -> Child:
        async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                stopped.append(name)

        return Child(name, run)

    supervisor = Supervisor(lifecycle, StreamRegistry(10), 5.0, handle_signals=False)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await nursery.start(
                supervisor.run, [child("discovery"), child("writer"), child("market")]
            )
            lifecycle.begin_drain()
    assert stopped == ["market", "writer", "discovery"]
