"""What the protocol front ends are given: the engine objects and the settings."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from mdactors.adapters.history import HistoryStore
from mdactors.adapters.metrics import Metrics
from mdactors.adapters.postgres_store import PostgresStore
from mdactors.engine.mark_history import MarkHistory
from mdactors.engine.market import Market
from mdactors.engine.market_view import MarketView
from mdactors.engine.recorder import Recorder
from mdactors.engine.scenarios import ScenarioEngine
from mdactors.engine.subscription import StreamRegistry
from mdactors.engine.supervisor import Lifecycle
from mdactors.settings import Settings

__all__ = ["ApiContext"]


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Everything an API module may read. Built once by the composition root."""

    settings: Settings
    market: Market
    recorder: Recorder
    history: HistoryStore
    streams: StreamRegistry
    lifecycle: Lifecycle
    metrics: Metrics
    scenarios: ScenarioEngine
    view: MarketView
    """The read model: candles, books, 24 h statistics and trades for every protocol."""
    checks: dict[str, Callable[[], Mapping[str, object]]] = field(default_factory=dict)
    """Extra readiness checks by dependency name (e.g. the configuration service)."""
    postgres: PostgresStore | None = None
    """With ``POSTGRES_URL``: snapshots, the symbol catalogue and long history."""
    marks: MarkHistory | None = None
    """The perpetuals' recorded mark-price candles (the Binance futures view's mark klines)."""
    ports: dict[str, int] = field(default_factory=dict)
    """Bound ports by listener (``http``, ``grpc``, ``ws``), filled as each one starts."""
