"""The market: every symbol's actor, resolved by any spelling, shared by all clients."""

from __future__ import annotations

import secrets
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import trio

from mdactors.domain.innovations import MarketFactor
from mdactors.domain.model_config import ModelConfig, model_for
from mdactors.domain.perpetual import BasisProcess
from mdactors.domain.symbols import (
    SymbolError,
    is_perpetual,
    normalize_symbol,
    spec_for,
    spot_of,
)
from mdactors.domain.tick import Tick
from mdactors.engine.derived_actor import PerpetualActor, cross_actor, perpetual_actor
from mdactors.engine.restarts import RestartBudget, keep_running
from mdactors.engine.symbol_actor import SymbolActor

__all__ = ["Market", "UnknownSymbol"]


class UnknownSymbol(LookupError):
    """The symbol is well formed but not simulated by this market."""

    def __init__(self, key: str, needed_by: str = "") -> None:
        super().__init__(f"unknown symbol {key!r}" + (f" ({needed_by})" if needed_by else ""))
        self.key = key


def _legs(key: str, simulated: Sequence[str]) -> tuple[str, ...] | None:
    """The simulated symbols ``key`` is priced from: a perpetual's spot (which must be
    simulated), a cross's two legs with a common quote (if simulated); else ``None``."""
    if is_perpetual(key):
        spot = spot_of(key)
        if spot not in simulated:
            raise UnknownSymbol(spot, f"{key} is simulated on its spot")
        return (spot,)
    base, _, quote = key.partition("/")
    for leg in simulated:
        leg_base, _, leg_quote = leg.partition("/")
        if leg_base == base and leg != key and not is_perpetual(leg):
            other = f"{quote}/{leg_quote}"
            if other in simulated:
                return (leg, other)
    return None


def _leaders_first(keys: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``(key, legs)`` for every key, each after the symbols it is priced from."""
    legs = {key: _legs(key, keys) or () for key in keys}
    ordered: list[tuple[str, tuple[str, ...]]] = []
    placed: set[str] = set()
    while len(ordered) < len(keys):
        ready = [k for k in keys if k not in placed and all(leg in placed for leg in legs[k])]
        if not ready:
            raise ValueError(f"symbols priced from each other: {sorted(set(keys) - placed)}")
        for key in ready:
            ordered.append((key, legs[key]))
            placed.add(key)
    return ordered


class Market:
    """Owns one :class:`SymbolActor` per configured symbol.

    There is one market per process and every client reads the same actors:
    two subscribers of a symbol see identical ticks. Random streams derive
    from ``(seed, symbol, purpose)``, so a seeded run is reproducible and
    does not change when other symbols are added. Each symbol runs the model
    :func:`~mdactors.domain.model_config.model_for` gives it under ``models``
    (the ``MODEL_CONFIG`` overrides); correlated symbols share the market
    factor through a counter-based generator, each actor drawing its own copy.
    ``start_prices`` (by symbol key) starts actors where a previous run
    stopped; the others start at their spec's seed price.

    Perpetuals and crosses of simulated legs are priced from those symbols'
    actors (:mod:`mdactors.engine.derived_actor`) unless ``derive`` is false
    (a replay: the recording holds each symbol's own prices).
    """

    def __init__(
        self,
        symbols: Iterable[str],
        interval: float,
        seed: int | None = None,
        *,
        wall_clock: Callable[[], int] = time.time_ns,
        models: ModelConfig | None = None,
        start_prices: Mapping[str, float] | None = None,
        derive: bool = True,
    ) -> None:
        start_prices = start_prices or {}
        self.seed = seed if seed is not None else secrets.randbits(32)
        self.wall_clock = wall_clock
        self.source = "simulator"
        """The data source the prices come from (``replay``, ``feed``: see the app)."""
        keys = list(symbols)
        built: dict[str, SymbolActor] = {}
        for key, legs in _leaders_first(keys) if derive else [(key, ()) for key in keys]:
            spec = spec_for(key)
            if not legs:
                built[key] = SymbolActor(
                    spec,
                    model_for(spec, models),
                    interval,
                    self.rng(key, "live"),
                    factor=self.factor("live"),
                    volume_rng=self.rng(key, "volume"),
                    start_price=start_prices.get(key),
                    wall_clock=wall_clock,
                )
                continue
            common: dict[str, Any] = {
                "start_price": start_prices.get(key),
                "wall_clock": wall_clock,
            }
            rngs = (self.rng(key, "derived"), self.rng(key, "volume"))
            if spec.perpetual:
                built[key] = perpetual_actor(
                    spec,
                    built[legs[0]],
                    *rngs,
                    positions_rng=self.rng(key, "positions"),
                    **common,
                )
            else:
                built[key] = cross_actor(spec, built[legs[0]], built[legs[1]], *rngs, **common)
        self.actors: dict[str, SymbolActor] = {key: built[key] for key in keys}

    def rng(self, key: str, purpose: str) -> np.random.Generator:
        """A generator for one symbol and purpose, derived from the market seed."""
        return np.random.default_rng(
            [self.seed, zlib.crc32(key.encode()), zlib.crc32(purpose.encode())]
        )

    def factor(self, purpose: str) -> MarketFactor:
        """The common market factor for ``purpose``: same draws for every symbol, own cache."""
        return MarketFactor(self.seed, purpose)

    @property
    def symbols(self) -> list[str]:
        """Keys of the simulated symbols, in configuration order."""
        return list(self.actors)

    def resolve(self, raw: str) -> str:
        """The key of a simulated symbol in any spelling.

        Raises :class:`~mdactors.domain.symbols.SymbolError` if malformed and
        :class:`UnknownSymbol` if well formed but not simulated.
        """
        key = normalize_symbol(raw)
        if key not in self.actors:
            raise UnknownSymbol(key)
        return key

    def actor(self, key: str) -> SymbolActor:
        """The actor of a resolved key."""
        return self.actors[key]

    def perpetual(self, key: str) -> PerpetualActor | None:
        """The actor of a resolved key if it is a simulated perpetual, else ``None``."""
        actor = self.actors[key]
        return actor if isinstance(actor, PerpetualActor) else None

    def latest(self, key: str) -> Tick:
        """The last tick of a resolved key."""
        return self.actors[key].latest

    def indicative(self, key: str) -> float | None:
        """A price for an unsimulated ``key`` from the live symbols it is made of, if any.

        A perpetual of a simulated spot: the spot's price times its mean basis;
        a cross ``X/Y`` of two simulated legs with a common quote: ``X/Q ÷ Y/Q``.
        ``None`` when ``key`` is simulated itself or nothing it is made of is.
        """
        if key in self.actors:
            return None
        if is_perpetual(key):
            spot = self.actors.get(spot_of(key))
            return None if spot is None else spot.latest.price * BasisProcess.MEAN_FACTOR
        base, _, quote = key.partition("/")
        for leg_key in self.actors:
            leg_base, _, leg_quote = leg_key.partition("/")
            other = self.actors.get(f"{quote}/{leg_quote}")
            if leg_base == base and other is not None and not is_perpetual(leg_key):
                return self.actors[leg_key].latest.price / other.latest.price
        return None

    def halted(self) -> dict[str, str]:
        """Symbols whose price circuit breaker halts publication, with the reason."""
        return {
            key: actor.breaker.reason
            for key, actor in self.actors.items()
            if actor.breaker is not None and actor.breaker.open
        }

    def is_known(self, raw: str) -> bool:
        """Whether ``raw`` names a simulated symbol."""
        try:
            self.resolve(raw)
        except (SymbolError, UnknownSymbol):
            return False
        return True

    async def run(
        self,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
        *,
        on_give_up: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        """Run every actor until cancelled.

        An actor that crashes is restarted (at most 5 times a minute) and
        resumes from its last price and sequence; past that budget it stays
        down and ``on_give_up`` is told, while the other actors go on.
        """

        def give_up(name: str, error: BaseException) -> None:
            if on_give_up is not None:
                on_give_up(f"actor {name}", error)

        async with trio.open_nursery() as nursery:
            for key, actor in self.actors.items():
                await nursery.start(keep_running, key, actor.run, RestartBudget(), give_up)
            task_status.started()
