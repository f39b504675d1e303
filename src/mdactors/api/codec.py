"""Tick → wire formats. Each tick is encoded at most once per format and shared.

Pure functions over value types: no trio, no sockets. Encodings are cached
in ``Tick.wire`` keyed by format name.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from mdactors.domain.perpetual import PerpetualSnapshot
from mdactors.domain.tick import Tick

__all__ = [
    "LIVE_SOURCE",
    "dumps",
    "perpetual_fields",
    "rfc3339",
    "tick_fields",
    "tick_json",
    "tick_quote_fields",
]

LIVE_SOURCE = "market-data-simulator"


def rfc3339(ts_ns: int) -> str:
    """RFC 3339 UTC with microseconds and a ``Z`` (``2026-11-24T21:43:00.123456Z``)."""
    seconds, rest = divmod(ts_ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{rest // 1000:06d}Z"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(payload: Any) -> bytes:
    """Compact JSON; non-finite floats become ``null`` (JSON has no NaN)."""
    return json.dumps(_finite(payload), separators=(",", ":"), allow_nan=False).encode()


def tick_quote_fields(tick: Tick) -> dict[str, Any]:
    """A tick's prices, volumes and time as JSON fields (without its identity)."""
    return {
        "price": tick.price,
        "bid": tick.bid,
        "ask": tick.ask,
        "volume": tick.volume,
        "change": tick.change,
        "change_percentage": tick.change_pct,
        "daily_high": tick.day_high,
        "daily_low": tick.day_low,
        "daily_volume": tick.day_volume,
        "timestamp": rfc3339(tick.ts_ns),
    }


def tick_fields(tick: Tick) -> dict[str, Any]:
    """The JSON object of a tick, shared by REST and the streams."""
    return {
        "symbol": tick.symbol,
        "sequence": tick.seq,
        **tick_quote_fields(tick),
        "timestamp_ns": tick.ts_ns,
        "source": LIVE_SOURCE,
    }


def perpetual_fields(snapshot: PerpetualSnapshot) -> dict[str, Any]:
    """A perpetual's contract state as JSON fields (REST and the WebSocket ``funding`` channel).

    ``funding_rate`` is the estimated rate of the interval that settles at
    ``next_funding_time``; ``open_interest`` is in contracts (base units) and
    ``open_interest_value`` in the quote currency at the mark price.
    """
    return {
        "mark_price": snapshot.mark_price,
        "index_price": snapshot.index_price,
        "premium_index": snapshot.premium_index,
        "funding_rate": snapshot.funding_rate,
        "interest_rate": snapshot.interest_rate,
        "next_funding_time": rfc3339(snapshot.next_funding_ms * 1_000_000),
        "open_interest": snapshot.open_interest,
        "open_interest_value": snapshot.open_interest * snapshot.mark_price,
        "timestamp": rfc3339(snapshot.time_ns),
    }


def tick_json(tick: Tick) -> bytes:
    """:func:`tick_fields` as JSON bytes, encoded once per tick."""
    cached = tick.wire.get("json")
    if cached is None:
        cached = tick.wire["json"] = dumps(tick_fields(tick))
    return cached
