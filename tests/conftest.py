"""Shared fixtures: a real service on loopback ports, and clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from mdactors.app import Service, build_service
from mdactors.settings import load_settings

TEST_ENV = {
    "HOST": "127.0.0.1",
    "HTTP_PORT": "0",
    "GRPC_PORT": "0",
    "WS_PORT": "0",
    "SIM_SEED": "42",
    "PRICE_UPDATE_INTERVAL": "50ms",
    "LOG_LEVEL": "WARNING",
    "SHUTDOWN_TIMEOUT": "3s",
    "DRAIN_DELAY": "0s",
}


@asynccontextmanager
async def running_service(env: Mapping[str, str] | None = None) -> AsyncIterator[Service]:
    """Start a whole service in this trio run on free loopback ports; drain it on exit."""
    settings = load_settings(environ={**TEST_ENV, **(env or {})}, dotenv=None)
    service = build_service(settings, handle_signals=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(service.run)
        try:
            yield service
        finally:
            service.context.lifecycle.begin_drain()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    """A running service with the test defaults (seed 42, 50 ms ticks)."""
    async with running_service() as running:
        yield running


@pytest.fixture
async def http(service: Service) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client pointed at the service's HTTP port."""
    base = f"http://127.0.0.1:{service.ports['http']}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        yield client


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Poll ``condition`` every 10 ms until true; fail after ``within`` seconds.

    For conditions on state that no event announces (counters, HTTP answers).
    """
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110 - nothing to wait on but the state itself
            await trio.sleep(0.01)
