"""Running scenarios on a live symbol: the scenario record and a symbol's overlay state.

A :class:`SymbolOverlay` sits between a symbol's price model and its ticks.
Each step it is given the model's new log price (the *base*) and returns the
log price to publish: base + the scenarios' deterministic offsets + an
*excess* built up from rescaled model returns, extra noise, shared paths and
reversion. When the last scenario ends the offsets are 0 and the caller folds
the excess into the model's state, so normal behaviour resumes from exactly
the price last published.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mdactors.domain.scenarios import (
    Disruption,
    Phase,
    ScenarioKind,
    Shape,
    SharedPath,
    Timeline,
)

__all__ = ["MAX_LOG_DEVIATION", "Scenario", "SymbolOverlay"]

MAX_LOG_DEVIATION = math.log(1_000.0)
"""Overlays never move a price more than 1000× away from its model (a last-resort bound)."""

_NOISE_BATCH = 256


@dataclass(slots=True, eq=False)
class Scenario:
    """One started scenario: what, on which symbols, when, and as requested.

    ``timeline`` is replaced (never mutated) when the scenario is stopped;
    every symbol reads it on each tick, so a stop takes effect everywhere at
    once. ``shape`` is a price :class:`~mdactors.domain.scenarios.Shape` or,
    for feed disruptions, a :class:`~mdactors.domain.scenarios.Disruption`.
    """

    id: str
    kind: ScenarioKind
    symbols: tuple[str, ...]
    timeline: Timeline
    shape: Shape | Disruption
    params: dict[str, Any] = field(default_factory=dict)
    shared: SharedPath | None = None
    started_ns: int = 0

    def status(self, t: float) -> tuple[Phase, float, float]:
        """``(phase, progress, level)`` at ``t``."""
        phase, progress = self.timeline.phase(t)
        return phase, progress, self.timeline.level(t)


class SymbolOverlay:
    """The active price scenarios of one symbol and the deviation they built up.

    ``sigma`` is the symbol's volatility per √second (it scales noise and
    shared paths, so a crash moves a stablecoin less than BTC). ``rng``
    draws the independent noise.
    """

    def __init__(
        self, key: str, log_price: float, sigma: float, rng: np.random.Generator, t: float
    ) -> None:
        self.key = key
        self.sigma = sigma
        self.scenarios: list[Scenario] = []
        self.excess = 0.0
        self.offset = 0.0
        self.volume = 1.0
        self.spread = 1.0
        self.liquidations = 1.0
        self._rng = rng
        self._noise: list[float] = []
        self._base = log_price
        self._time = t
        self._anchors: dict[str, float] = {}
        self._shared_at: dict[str, float] = {}

    @property
    def empty(self) -> bool:
        """Whether no scenario is left (the caller may fold :attr:`excess` and drop this)."""
        return not self.scenarios

    def add(self, scenario: Scenario, t: float) -> None:
        """Start applying ``scenario``; its anchor is the price without offsets now."""
        self.scenarios.append(scenario)
        self._anchors[scenario.id] = self._base + self.excess
        if scenario.shared is not None:
            self._shared_at[scenario.id] = scenario.shared.value(t)

    def _drop(self, scenario: Scenario) -> None:
        self.scenarios.remove(scenario)
        self._anchors.pop(scenario.id, None)
        self._shared_at.pop(scenario.id, None)

    def _normal(self) -> float:
        if not self._noise:
            self._noise = self._rng.standard_normal(_NOISE_BATCH).tolist()
        return self._noise.pop()

    def advance(self, t: float, base: float) -> float:
        """The log price to publish at ``t`` given the model's log price ``base``.

        Finished scenarios are dropped here. The result is always finite and
        within :data:`MAX_LOG_DEVIATION` of ``base``.
        """
        dt = max(0.0, t - self._time)
        self._time = t
        dx = base - self._base
        self._base = base
        offset, scale, noise2, shared, volume, pull = 0.0, 1.0, 0.0, 0.0, 1.0, 0.0
        spread = liquidations = 1.0
        pulls: list[tuple[float, float]] = []
        for scenario in list(self.scenarios):
            timeline = scenario.timeline
            if t >= timeline.end:
                self._drop(scenario)
                continue
            effect = scenario.shape.effect(self.key, timeline.level(t))  # type: ignore[union-attr]
            offset += effect.offset
            scale *= effect.scale
            noise2 += effect.noise * effect.noise
            volume *= effect.volume
            spread *= effect.spread
            liquidations *= effect.liquidations
            if scenario.shared is not None:
                now = scenario.shared.value(t)
                shared += effect.common * (now - self._shared_at[scenario.id])
                self._shared_at[scenario.id] = now
            if effect.reversion:
                pulls.append((effect.reversion, self._anchors[scenario.id]))
            pull += effect.pull
        excess = self.excess + (scale - 1.0) * dx + self.sigma * shared
        if noise2:
            excess += self.sigma * math.sqrt(noise2 * dt) * self._normal()
        for rate, anchor in pulls:
            excess -= -math.expm1(-rate * dt) * (base + excess - anchor)
        if pull:
            excess *= math.exp(-pull * dt)
        if not math.isfinite(excess):
            excess = 0.0
        self.excess = min(max(excess, -MAX_LOG_DEVIATION), MAX_LOG_DEVIATION)
        self.offset = offset
        self.volume = max(volume, 0.0)
        self.spread = max(spread, 0.0)
        self.liquidations = max(liquidations, 0.0)
        total = min(max(self.excess + offset, -MAX_LOG_DEVIATION), MAX_LOG_DEVIATION)
        return base + total
