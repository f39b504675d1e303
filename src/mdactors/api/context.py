"""What the protocol front ends are given: the engine objects and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from mdactors.adapters.history import HistoryStore
from mdactors.adapters.metrics import Metrics
from mdactors.engine.market import Market
from mdactors.engine.recorder import Recorder
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
