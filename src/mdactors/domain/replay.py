"""Recorded feeds for ``mdactors replay``: read and validate tick or candle files.

Two formats, CSV (with a header) or JSON lines (one object per line, same keys):

- ticks: ``timestamp,symbol,price[,bid,ask][,volume]`` — what ``mdactors
  simulate`` writes;
- candles: ``timestamp,symbol,open,high,low,close[,volume]`` — each candle is
  played as four points inside its span (open, the nearer extreme, the other
  extreme, close), so highs and lows are really traded.

``timestamp`` is RFC 3339 (``...Z`` or an offset) or epoch seconds or
milliseconds. Rows must be in time order per symbol. Every problem is a
:class:`ReplayFileError` naming the line, found before anything is served.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from mdactors.domain.symbols import SymbolError, normalize_symbol

__all__ = ["MAX_ROWS", "ReplayFileError", "ReplayPlan", "ReplayPoint", "read_replay"]

MAX_ROWS = 5_000_000
_TICK = ("timestamp", "symbol", "price")
_CANDLE = ("timestamp", "symbol", "open", "high", "low", "close")


class ReplayFileError(ValueError):
    """A recorded file cannot be replayed; ``line`` is 1-based."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


@dataclass(frozen=True, slots=True)
class ReplayPoint:
    """One published state: seconds after the file's first timestamp."""

    offset: float
    price: float
    volume: float
    bid: float | None = None
    ask: float | None = None


@dataclass
class ReplayPlan:
    """The points of every symbol, each list in time order, and the file's span."""

    points: dict[str, list[ReplayPoint]] = field(default_factory=dict)
    duration: float = 0.0

    @property
    def symbols(self) -> list[str]:
        """Symbol keys in order of first appearance."""
        return list(self.points)


def _timestamp(text: str) -> float:
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            raise ValueError("timestamp needs Z or a UTC offset") from None
        return moment.timestamp()
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad timestamp {text!r}")
    return value / 1000.0 if value > 1e11 else value


def _number(row: dict[str, str], name: str, *, positive: bool = True) -> float:
    raw = row.get(name)
    if raw is None or str(raw).strip() == "":
        raise ValueError(f"missing {name}")
    value = float(raw)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}: {raw!r}")
    return value


def _optional(row: dict[str, str], name: str) -> float | None:
    raw = row.get(name)
    if raw is None or str(raw).strip() == "":
        return None
    return _number(row, name)


def _rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` pairs of a CSV (with header) or JSON-lines document."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ReplayFileError(number, f"not JSON: {error.msg}") from None
            if not isinstance(row, dict):
                raise ReplayFileError(number, "expected a JSON object")
            yield number, {str(k): str(v) if v is not None else "" for k, v in row.items()}
        return
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise ReplayFileError(1, "empty file")
    for row in reader:
        if None in row:
            raise ReplayFileError(reader.line_num, "more fields than the header names")
        yield reader.line_num, row


def _candle_points(
    offset: float, span: float, o: float, h: float, low: float, c: float, volume: float
) -> list[ReplayPoint]:
    first, second = (low, h) if c >= o else (h, low)
    quarter = volume / 4.0
    return [
        ReplayPoint(offset + span * share, price, quarter)
        for share, price in ((0.0, o), (0.25, first), (0.5, second), (0.75, c))
    ]


def read_replay(text: str) -> ReplayPlan:
    """Parse and validate a whole recorded file; raise :class:`ReplayFileError`."""
    rows = list(_rows(text))
    if not rows:
        raise ReplayFileError(1, "no rows")
    if len(rows) > MAX_ROWS:
        raise ReplayFileError(MAX_ROWS + 1, f"more than {MAX_ROWS} rows")
    columns = set(rows[0][1])
    candles = all(name in columns for name in _CANDLE)
    if not candles and not all(name in columns for name in _TICK):
        raise ReplayFileError(
            rows[0][0], f"need columns {', '.join(_TICK)} (ticks) or {', '.join(_CANDLE)} (candles)"
        )
    parsed: list[tuple[int, str, float, dict[str, str]]] = []
    for number, row in rows:
        try:
            key = normalize_symbol(row.get("symbol") or "")
            stamp = _timestamp(row.get("timestamp") or "")
        except (SymbolError, ValueError) as error:
            raise ReplayFileError(number, str(error)) from None
        parsed.append((number, key, stamp, row))
    origin = min(stamp for _, _, stamp, _ in parsed)
    spans = _candle_spans(parsed) if candles else {}
    plan = ReplayPlan()
    last: dict[str, float] = {}
    for number, key, stamp, row in parsed:
        if stamp < last.get(key, -math.inf):
            raise ReplayFileError(number, f"{key}: timestamps must not go back in time")
        last[key] = stamp
        try:
            points = _points(row, stamp - origin, spans.get(key, 0.0), candles)
        except ValueError as error:
            raise ReplayFileError(number, str(error)) from None
        plan.points.setdefault(key, []).extend(points)
    plan.duration = max(last.values()) - origin + max(spans.values(), default=0.0)
    return plan


def _candle_spans(parsed: Iterable[tuple[int, str, float, dict[str, str]]]) -> dict[str, float]:
    """Each symbol's candle length: the smallest gap between its timestamps (60 s if one)."""
    stamps: dict[str, list[float]] = {}
    for _, key, stamp, _ in parsed:
        stamps.setdefault(key, []).append(stamp)
    spans = {}
    for key, values in stamps.items():
        gaps = [b - a for a, b in itertools.pairwise(values) if b > a]
        spans[key] = min(gaps, default=60.0)
    return spans


def _points(row: dict[str, str], offset: float, span: float, candles: bool) -> list[ReplayPoint]:
    if candles:
        o, h = _number(row, "open"), _number(row, "high")
        low, c = _number(row, "low"), _number(row, "close")
        volume = _optional(row, "volume") or 0.0
        if not low <= min(o, c) <= max(o, c) <= h:
            raise ValueError("candle needs low <= open, close <= high")
        return _candle_points(offset, span, o, h, low, c, volume)
    price = _number(row, "price")
    bid, ask = _optional(row, "bid"), _optional(row, "ask")
    if (bid is None) != (ask is None):
        raise ValueError("give both bid and ask, or neither")
    if bid is not None and ask is not None and not bid < ask:
        raise ValueError(f"bid {bid} must be below ask {ask}")
    return [ReplayPoint(offset, price, _optional(row, "volume") or 0.0, bid, ask)]
