"""A load-generator process: run ``spec.clients`` subscribers, report a :class:`Tally`.

The parent drives every worker through the same steps over a pipe, so all
clients connect at once and measure the same window:

1. worker → ``("spawned",)``; parent → ``("connect", spec)`` (once the server is up)
2. worker connects its clients (at most ``connect_concurrency`` at a time)
   → ``("ready", connected, seconds)`` once each had its first tick
3. parent → ``("window", start_ns, end_ns)`` (wall clock)
4. after the window: worker → ``("result", tally, cpu_seconds_in_window)``
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

import anyio

from bench.clients import BACKENDS, WorkerSpec, open_clients
from bench.stats import Tally

__all__ = ["worker_main"]

_GRACE_S = 0.3


async def _run(spec: WorkerSpec, conn: Connection) -> None:
    tally = Tally()
    started = time.perf_counter()
    connected = 0
    all_connected = anyio.Event()
    gate = anyio.Semaphore(spec.connect_concurrency)

    async def client(index: int) -> None:
        await gate.acquire()
        opened = time.perf_counter()
        waiting = True

        def first() -> None:
            nonlocal connected, waiting
            waiting = False
            tally.connect_ms.append((time.perf_counter() - opened) * 1000)
            gate.release()
            connected += 1
            if connected == spec.clients:
                all_connected.set()

        try:
            await run(index, tally, first)
            tally.error("stream ended")
        except Exception as error:
            tally.error(error)
        finally:
            if waiting:
                gate.release()

    async with open_clients(spec) as run, anyio.create_task_group() as clients:
        for index in range(spec.first_client, spec.first_client + spec.clients):
            clients.start_soon(client, index)
        with anyio.move_on_after(spec.connect_timeout):
            await all_connected.wait()
        conn.send(("ready", connected, time.perf_counter() - started))
        _, start_ns, end_ns = await anyio.to_thread.run_sync(conn.recv)
        tally.window = (start_ns, end_ns)
        await anyio.sleep(max(0.0, (start_ns - time.time_ns()) / 1e9))
        cpu = time.process_time()
        await anyio.sleep(max(0.0, (end_ns - time.time_ns()) / 1e9))
        cpu = time.process_time() - cpu
        await anyio.sleep(_GRACE_S)
        clients.cancel_scope.cancel()
    conn.send(("result", tally, cpu))


def worker_main(conn: Connection) -> None:
    """Process entry point (must be importable for the ``spawn`` start method)."""
    _raise_fd_limit()
    conn.send(("spawned",))
    try:
        _, spec = conn.recv()
    except EOFError:  # the parent gave up before the server was up
        return
    anyio.run(_run, spec, conn, backend=BACKENDS[spec.transport])


def _raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
