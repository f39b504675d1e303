"""What the market hands to PostgreSQL besides ticks and candles: snapshots and the catalogue.

:func:`feed_postgres` is a supervised task. Every ``snapshot_interval`` it
queues one ``market_snapshots`` row per symbol (its latest tick and rolling
24 h figures); every second it compares each symbol's ``is_active`` (simulated
and not halted by its price breaker) with what it last queued and queues the
changes, so the ``symbols`` table follows the market. At start the whole
catalogue is queued (the store itself sets rows of symbols no longer
simulated inactive when it connects).
It only reads engine state and queues rows: it never waits on PostgreSQL.
"""

from __future__ import annotations

import trio

from mdactors.adapters.postgres_store import PostgresStore
from mdactors.engine.market import Market
from mdactors.engine.recorder import Recorder

__all__ = ["feed_postgres"]

_CATALOGUE_CHECK_S = 1.0


def _catalogue(market: Market) -> dict[str, bool]:
    halted = market.halted()
    return {key: key not in halted for key in market.symbols}


def queue_snapshots(store: PostgresStore, market: Market, recorder: Recorder) -> None:
    """Queue one snapshot per symbol, as of now."""
    rows = []
    for key in market.symbols:
        stats = recorder.stats_24h(key)
        rows.append((market.latest(key), stats.volume, stats.change, stats.change_pct))
    store.record_snapshots(rows)


async def feed_postgres(
    store: PostgresStore,
    market: Market,
    recorder: Recorder,
    snapshot_interval: float,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Queue snapshots and catalogue changes until cancelled."""
    known = _catalogue(market)
    store.record_catalogue(list(known.items()))
    task_status.started()
    next_snapshot = trio.current_time() + snapshot_interval
    while True:
        await trio.sleep(min(_CATALOGUE_CHECK_S, max(0.0, next_snapshot - trio.current_time())))
        if trio.current_time() >= next_snapshot:
            queue_snapshots(store, market, recorder)
            while next_snapshot <= trio.current_time():  # absolute cadence, no catch-up burst
                next_snapshot += snapshot_interval
        now = _catalogue(market)
        changed = [(key, active) for key, active in now.items() if known.get(key) != active]
        if changed:
            store.record_catalogue(changed)
            known = now
