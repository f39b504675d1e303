"""History in layers: memory (or Redis) for the recent past, PostgreSQL behind it for the rest.

:class:`PersistedHistory` is the :class:`~mdactors.adapters.history.HistoryStore`
the service uses when ``POSTGRES_URL`` is set. Writes go to the inner store
as before and, off the tick path, to PostgreSQL: ticks sampled per symbol
(``PRICE_FEED_SAMPLE_INTERVAL``) into ``price_feeds``, every closed candle of
every interval into ``candles``.

A query is answered by the inner store first. Only when that answer is short
of ``limit`` and the range reaches before the oldest item the inner store
returned (its retention ended there) is PostgreSQL asked for the older part,
so recent queries never wait on it, and a deployment that ran for months
answers months of candles after a restart. PostgreSQL unavailable → the
inner store's answer alone (nothing fails because PostgreSQL does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from mdactors.adapters.history import HistoryStore
from mdactors.adapters.postgres_rows import Sampler
from mdactors.adapters.postgres_store import PostgresStore
from mdactors.domain.candles import Candle
from mdactors.domain.tick import Tick

__all__ = ["PersistedHistory"]


class PersistedHistory:
    """``inner`` for recent history, ``store`` (PostgreSQL) for what ``inner`` no longer holds.

    ``volume_24h`` gives a symbol's rolling 24 h volume for its ``price_feeds``
    rows (the recorder's, wired by the app once it exists).
    """

    def __init__(
        self,
        inner: HistoryStore,
        store: PostgresStore,
        sample_interval: float,
        volume_24h: Callable[[str], float] = lambda key: 0.0,
    ) -> None:
        self.inner = inner
        self.store = store
        self.sampler = Sampler(sample_interval)
        self.volume_24h = volume_24h

    def record_ticks(self, ticks: Sequence[Tick]) -> None:
        self.inner.record_ticks(ticks)
        picked = self.sampler.pick(list(ticks))
        if picked:
            volume = self.volume_24h(picked[0].symbol)
            self.store.record_price_feeds([(tick, volume) for tick in picked])

    def record_candles(self, candles: Sequence[Candle]) -> None:
        self.inner.record_candles(candles)
        self.store.record_candles(candles)

    async def ticks(self, key: str, start_ns: int, end_ns: int, limit: int) -> list[Tick]:
        recent = await self.inner.ticks(key, start_ns, end_ns, limit)
        oldest = recent[0].ts_ns if recent else end_ns + 1
        if len(recent) >= limit or oldest <= start_ns:
            return recent
        older = await self.store.ticks(key, start_ns, oldest - 1, limit - len(recent))
        return (older or []) + recent

    async def candles(
        self, key: str, interval: str, start_ms: int, end_ms: int, limit: int
    ) -> list[Candle]:
        recent = await self.inner.candles(key, interval, start_ms, end_ms, limit)
        oldest = recent[0].start_ms if recent else end_ms + 1
        if len(recent) >= limit or oldest <= start_ms:
            return recent
        older = await self.store.candles(key, interval, start_ms, oldest - 1, limit - len(recent))
        return (older or []) + recent

    def describe(self) -> Mapping[str, object]:
        """The inner store's state (PostgreSQL has its own readiness check, ``postgres``)."""
        return self.inner.describe()
