"""Publishing ticks simulated elsewhere into the local topics (cluster and worker feeds)."""

from __future__ import annotations

from collections.abc import Container, Iterable, MutableMapping

from mdactors.domain.tick import Tick
from mdactors.engine.market import Market

__all__ = ["relay_ticks"]


def relay_ticks(
    market: Market,
    ticks: Iterable[Tick],
    relayed: MutableMapping[str, int],
    relay_lag: MutableMapping[str, float],
    skip: Container[str] = (),
    *,
    newer_only: bool = True,
) -> None:
    """Publish each tick into its symbol's topic (only those newer than the
    symbol's latest if ``newer_only``: a feed with several writers).

    Symbols in ``skip`` (simulated here) and unknown symbols are ignored;
    ``relayed`` counts the ticks published per symbol and ``relay_lag`` keeps
    the last one's age in seconds.
    """
    now_ns = market.wall_clock()
    for tick in ticks:
        key = tick.symbol
        if key in skip or key not in relayed:
            continue
        actor = market.actor(key)
        if newer_only and tick.seq <= actor.latest.seq:
            continue
        actor.relayed(tick)
        relayed[key] += 1
        relay_lag[key] = max(0.0, (now_ns - tick.ts_ns) / 1e9)
