"""Dependency checks: what ``/api/v1/ready`` reports, and a monitor that logs their changes."""

from __future__ import annotations

import logging
import time
from typing import Any

import trio

from mdactors.api.context import ApiContext
from mdactors.domain.guards import STALE_AFTER_S

__all__ = ["dependency_checks", "monitor_dependencies"]

log = logging.getLogger("mdactors.health")


def dependency_checks(ctx: ApiContext, now_ns: int) -> dict[str, dict[str, Any]]:
    """Every check by name, each with a ``status`` (``ok``, ``degraded`` or ``failed``)."""
    market = ctx.market
    stale = [
        key for key in market.symbols if (now_ns - market.latest(key).ts_ns) / 1e9 > STALE_AFTER_S
    ]
    halted = market.halted()
    checks: dict[str, dict[str, Any]] = {
        "market": {
            "status": "degraded" if stale or halted else "ok",
            "symbols": len(market.symbols),
            "stale_symbols": stale,
            "halted_symbols": halted,
        },
        "history": dict(ctx.history.describe()),
        "streams": {
            "status": "ok",
            "active": ctx.streams.active,
            "limit": ctx.streams.max_streams,
        },
    }
    checks.update({name: dict(check()) for name, check in ctx.checks.items()})
    if not ctx.lifecycle.healthy:
        checks["supervisor"] = {"status": "failed", "failures": ctx.lifecycle.failures}
    return checks


async def monitor_dependencies(
    ctx: ApiContext,
    interval: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Every ``interval`` (``HEALTH_CHECK_INTERVAL``) evaluate the checks; log each change
    of a dependency's status once, so an operator sees degradations without polling."""
    last: dict[str, str] = {}
    task_status.started()
    while True:
        for name, check in dependency_checks(ctx, time.time_ns()).items():
            status = str(check.get("status", "ok"))
            previous = last.get(name, "ok")
            if status != previous:
                level = logging.INFO if status == "ok" else logging.WARNING
                log.log(
                    level,
                    "dependency status changed",
                    extra={"event": "dependency_status", "dependency": name,
                           "status": status, "previous": previous},
                )  # fmt: skip
            last[name] = status
        await trio.sleep(interval)
