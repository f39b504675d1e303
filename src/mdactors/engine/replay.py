"""Play a recorded feed as the live market: each actor publishes the file's points."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import trio

from mdactors.domain.replay import ReplayPlan, ReplayPoint
from mdactors.engine.market import Market
from mdactors.engine.symbol_actor import SymbolActor

__all__ = ["ReplayDriver", "ReplayOptions"]

log = logging.getLogger("mdactors.replay")


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """What ``mdactors replay`` asks of the service: the file's plan, speed, looping."""

    plan: ReplayPlan
    speed: float = 1.0
    loop: bool = False

    def start_prices(self) -> dict[str, float]:
        """Each symbol's first recorded price: the market (and its backfill) starts there."""
        return {key: points[0].price for key, points in self.plan.points.items()}


class ReplayDriver:
    """Drives the market's actors from a :class:`ReplayPlan` instead of their models.

    Points are published at ``offset / speed`` seconds after the start,
    through the actor (sequence, day statistics, quotes when the file has
    none, scenarios and feed disruptions all apply). With ``loop`` the file
    starts over after its span; otherwise each symbol stops at its last point
    (and turns stale).
    """

    def __init__(self, market: Market, options: ReplayOptions) -> None:
        if options.speed <= 0:
            raise ValueError(f"speed must be positive, got {options.speed}")
        self.market = market
        self.plan = options.plan
        self.speed = options.speed
        self.loop = options.loop
        self.rounds: dict[str, int] = dict.fromkeys(self.plan.symbols, 0)

    async def _play(self, actor: SymbolActor, points: list[ReplayPoint]) -> None:
        start = trio.current_time()
        # a loop lasts the file's span, at least a little so a one-row file cannot spin
        period = max(self.plan.duration, points[-1].offset) / self.speed or 0.001
        while True:
            for point in points:
                await trio.sleep_until(start + point.offset / self.speed)
                actor.emit(actor.replayed(point.price, point.volume, point.bid, point.ask))
            self.rounds[actor.spec.key] += 1
            if not self.loop:
                log.info("replay ended", extra={"event": "replay_ended", "symbol": actor.spec.key})
                return
            start += period

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Play every symbol's points (forever with ``loop``)."""
        async with trio.open_nursery() as nursery:
            for key, points in self.plan.points.items():
                nursery.start_soon(self._play, self.market.actor(key), points)
            task_status.started()
