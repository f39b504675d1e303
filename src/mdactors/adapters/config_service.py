"""Client of the ecosystem's configuration service, with a TTL cache.

Parameters are read with ``GET {base}/api/v1/configuration?key=<key>``; the
answer is ``{key, value, ttl_seconds, ...}`` (a ``{"data": {...}}`` wrapper
is accepted too). A value is cached for its ``ttl_seconds`` (else
``CACHE_TTL``). When the service fails, the last known value is kept and the
circuit breaker stops calls for a while; a 404 means "not set" and is not a
failure.

Keys (``SYMBOL`` spelled ``BTC-USD``; a per-symbol key wins over the global one):

- ``market-data.simulation.tick-interval`` / ``market-data.simulation.SYMBOL.tick-interval``:
  a Go duration (``250ms``) or a number of milliseconds;
- ``market-data.simulation.volatility-factor`` / ``...SYMBOL.volatility-factor``:
  a multiplier of the model's volatility, 0 < f ≤ 10;
- ``market-data.simulation.spread-factor`` / ``...SYMBOL.spread-factor``:
  a multiplier of the quoted spread, 0 < f ≤ 100.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import trio

from mdactors.adapters.breaker import CircuitBreaker
from mdactors.settings import parse_duration

__all__ = ["ConfigClient", "SimulationOverrides", "SymbolOverrides", "keys_for"]

log = logging.getLogger("mdactors.config")

PREFIX = "market-data.simulation"
MAX_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class SymbolOverrides:
    """Effective parameters of one symbol; ``None`` keeps the service's own."""

    tick_interval: float | None = None
    volatility_factor: float = 1.0
    spread_factor: float = 1.0


@dataclass(frozen=True, slots=True)
class SimulationOverrides:
    """Effective parameters per symbol key."""

    symbols: dict[str, SymbolOverrides] = field(default_factory=dict)


def _spelling(key: str) -> str:
    return key.replace("/", "-")


def keys_for(symbols: Iterable[str]) -> list[str]:
    """Every configuration key that can affect ``symbols``."""
    names = ["tick-interval", "volatility-factor", "spread-factor"]
    keys = [f"{PREFIX}.{name}" for name in names]
    for symbol in symbols:
        keys += [f"{PREFIX}.{_spelling(symbol)}.{name}" for name in names]
    return keys


def _interval(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / 1000.0
    else:
        seconds = parse_duration(str(value))
    if not 0.001 <= seconds <= 3600:
        raise ValueError(f"tick interval {value!r} outside 1ms..1h")
    return seconds


def _factor(limit: float) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        number = float(value)
        if not 0 < number <= limit:
            raise ValueError(f"factor {value!r} outside (0, {limit}]")
        return number

    return parse


_PARSERS: dict[str, Callable[[Any], float]] = {
    "tick-interval": _interval,
    "volatility-factor": _factor(10.0),
    "spread-factor": _factor(100.0),
}


class ConfigClient:
    """Fetches and caches configuration values; never raises for service failures."""

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        breaker: CircuitBreaker,
        *,
        default_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.breaker = breaker
        self.default_ttl = default_ttl
        self.clock = clock
        self._values: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}

    def cached(self, key: str) -> Any:
        """The last known value of ``key`` (``None`` if not set or never fetched)."""
        return self._values.get(key)

    def due(self, key: str) -> bool:
        """Whether ``key`` must be fetched again."""
        return self.clock() >= self._expiry.get(key, 0.0)

    async def refresh(self, key: str) -> None:
        """Fetch ``key`` if its TTL ran out and the breaker lets the call through."""
        if not self.due(key) or not self.breaker.allow():
            return
        try:
            response = await self.http.get(
                f"{self.base_url}/api/v1/configuration", params={"key": key}
            )
            if response.status_code == 404:
                self._values.pop(key, None)
                self._expiry[key] = self.clock() + self.default_ttl
                self.breaker.record_success()
                return
            response.raise_for_status()
            if len(response.content) > MAX_VALUE_BYTES:
                raise ValueError("configuration answer too large")
            body = response.json()
        except (httpx.HTTPError, ValueError) as error:
            self.breaker.record_failure()
            log.debug("config fetch failed", extra={"key": key, "error": type(error).__name__})
            self._expiry[key] = self.clock() + min(self.default_ttl, 5.0)
            return
        self.breaker.record_success()
        if isinstance(body, dict) and isinstance(body.get("data"), dict):
            body = body["data"]
        if not isinstance(body, dict) or "value" not in body:
            log.warning("config answer without a value", extra={"key": key})
            self._expiry[key] = self.clock() + self.default_ttl
            return
        ttl = body.get("ttl_seconds")
        ttl = float(ttl) if isinstance(ttl, int | float) and ttl > 0 else self.default_ttl
        self._values[key] = body["value"]
        self._expiry[key] = self.clock() + ttl

    def overrides(self, symbols: Iterable[str]) -> SimulationOverrides:
        """Effective parameters per symbol from the cached values (invalid ones ignored)."""
        result: dict[str, SymbolOverrides] = {}
        for symbol in symbols:
            values: dict[str, float] = {}
            for name, parse in _PARSERS.items():
                for key in (f"{PREFIX}.{_spelling(symbol)}.{name}", f"{PREFIX}.{name}"):
                    raw = self.cached(key)
                    if raw is None:
                        continue
                    try:
                        values[name] = parse(raw)
                    except (TypeError, ValueError) as error:
                        log.warning(
                            "ignoring invalid config value", extra={"key": key, "error": str(error)}
                        )
                        continue
                    break
            result[symbol] = SymbolOverrides(
                tick_interval=values.get("tick-interval"),
                volatility_factor=values.get("volatility-factor", 1.0),
                spread_factor=values.get("spread-factor", 1.0),
            )
        return SimulationOverrides(result)

    async def run(
        self,
        symbols: list[str],
        apply: Callable[[SimulationOverrides], None],
        *,
        poll: float = 1.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Refresh due keys every ``poll`` seconds and apply what changed.

        Starts at once with the service's own parameters: a slow or absent
        configuration service never delays start-up.
        """
        keys = keys_for(symbols)
        applied = SimulationOverrides({symbol: SymbolOverrides() for symbol in symbols})
        task_status.started()
        while True:
            for key in keys:
                await self.refresh(key)
            current = self.overrides(symbols)
            if current != applied:
                apply(current)
                log.info("configuration applied", extra={"event": "config_applied"})
                applied = current
            await trio.sleep(poll)
