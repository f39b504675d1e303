"""The scenario engine: start, list and stop scenarios on the running market.

A started :class:`~mdactors.domain.overlay.Scenario` is attached to the
actor of each symbol it affects; from then on the actors apply it on their
own ticks (no task of its own, nothing to wake). Stopping replaces its
timeline by one that recovers from now, which every actor sees on its next
tick. Finished scenarios leave the actors by themselves and are kept here
for a while for the timeline view.
"""

from __future__ import annotations

import itertools
import secrets
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import trio

from mdactors.domain.overlay import Scenario
from mdactors.domain.scenarios import (
    Curve,
    Disruption,
    Phase,
    ScenarioKind,
    Shape,
    SharedPath,
    Timeline,
)
from mdactors.engine.market import Market

__all__ = ["ScenarioEngine", "TooManyScenarios", "UnknownScenario"]


class UnknownScenario(LookupError):
    """No active scenario has this id."""


class TooManyScenarios(RuntimeError):
    """The limit of concurrently active scenarios is reached; stop one first."""


class ScenariosElsewhere(RuntimeError):
    """This process does not simulate the market (it relays another process's ticks)."""


class ScenarioEngine:
    """The market's scenarios: at most ``max_active`` at once, ``keep`` finished remembered."""

    def __init__(self, market: Market, *, max_active: int = 64, keep: int = 100) -> None:
        self.market = market
        self.max_active = max_active
        self._active: dict[str, Scenario] = {}
        self.finished: deque[Scenario] = deque(maxlen=keep)
        self._serial = itertools.count(1)
        self.elsewhere: str | None = None
        """Set when another process simulates this market: why scenarios are refused here."""

    def start(
        self,
        kind: ScenarioKind,
        shape: Shape | Disruption,
        symbols: Iterable[str],
        *,
        duration: float,
        recovery: float,
        onset: float = 0.0,
        rise: Curve = Curve.SMOOTH,
        fall: Curve = Curve.SMOOTH,
        params: dict[str, Any] | None = None,
        shared: bool = False,
    ) -> Scenario:
        """Start a scenario now on ``symbols`` (resolved keys) and return it.

        ``duration``, ``recovery`` and ``onset`` (seconds) and the ``rise`` and
        ``fall`` curves make its :class:`~mdactors.domain.scenarios.Timeline`.
        """
        if self.elsewhere is not None:
            raise ScenariosElsewhere(self.elsewhere)
        if len(self.active()) >= self.max_active:
            raise TooManyScenarios(f"{self.max_active} scenarios are active; stop one first")
        now = trio.current_time()
        serial = next(self._serial)
        scenario = Scenario(
            id=f"{kind.value}-{serial}-{secrets.token_hex(3)}",
            kind=kind,
            symbols=tuple(dict.fromkeys(symbols)),
            timeline=Timeline(now, duration, recovery, onset, rise=rise, fall=fall),
            shape=shape,
            params=dict(params or {}),
            shared=SharedPath(self.market.rng(kind.value, f"shared-{serial}"), now)
            if shared
            else None,
            started_ns=self.market.wall_clock(),
        )
        for key in scenario.symbols:
            rng = self.market.rng(key, f"scenario-{serial}")
            self.market.actor(key).attach(scenario, rng)
        self._active[scenario.id] = scenario
        return scenario

    def stop(self, scenario_id: str) -> Scenario:
        """Begin ``scenario_id``'s recovery now; raise :class:`UnknownScenario` if not active."""
        self.active()
        scenario = self._active.get(scenario_id)
        if scenario is None:
            raise UnknownScenario(scenario_id)
        scenario.timeline = scenario.timeline.stopped(trio.current_time())
        return scenario

    def active(self) -> list[Scenario]:
        """Scenarios not yet over (including recovering ones), oldest first."""
        if not self._active:
            return []  # also answers outside trio (metrics read before the loop starts)
        now = trio.current_time()
        for scenario_id, scenario in list(self._active.items()):
            if scenario.timeline.phase(now)[0] is Phase.DONE:
                del self._active[scenario_id]
                self.finished.append(scenario)
        return list(self._active.values())

    def counts(self) -> Counter[tuple[str, str]]:
        """Active scenarios per ``(kind, symbol)`` (for the metrics)."""
        counts: Counter[tuple[str, str]] = Counter()
        for scenario in self.active():
            for key in scenario.symbols:
                counts[(scenario.kind.value, key)] += 1
        return counts
