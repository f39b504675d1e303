"""Bars → ``repeated marketdata.PricePoint`` wire bytes, vectorised.

Building 100k ``PricePoint`` messages one by one costs ~0.6 s of Python; this
writes the same wire bytes with numpy in a few milliseconds. Every point is
a fixed-size record::

    tag(field, LEN) 59 | 0x0a 12 | 0x08 <seconds: 5-byte varint> 0x10 <nanos: 5-byte varint>
                       | 0x11 <open> 0x19 <high> 0x21 <low> 0x29 <close> 0x31 <volume>

Varints are written in 5 bytes: canonical for seconds within 1978..3058 (the
range requests are held to), padded with continuation bits for the nanos.
Padded varints are valid protobuf (every conformant parser reads varints of
up to 10 bytes); zero fields are written explicitly, which is also valid.
"""

from __future__ import annotations

import numpy as np

from mdactors.domain.bars import Bars

__all__ = ["MAX_SECONDS", "MIN_SECONDS", "price_points"]

#: Timestamps whose seconds need exactly five varint bytes (1978-07-04 .. 3058).
MIN_SECONDS, MAX_SECONDS = 1 << 28, (1 << 35) - 1
_RECORD = 61
_POINT = 59
_DOUBLE_TAGS = (0x11, 0x19, 0x21, 0x29, 0x31)


def _varint5(values: np.ndarray) -> np.ndarray:
    """Five-byte varints (``len(values)`` × 5 uint8) of values below 2**35."""
    values = values.astype(np.uint64)
    shifts = np.arange(0, 35, 7, dtype=np.uint64)
    out = ((values[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    out[:, :4] |= 0x80
    return out


def price_points(field: int, bars: Bars) -> bytes:
    """The bytes of ``len(bars)`` ``PricePoint`` entries of repeated field ``field`` (< 16)."""
    count = len(bars)
    seconds, nanos = np.divmod(bars.timestamps_ns, 1_000_000_000)
    if count and (seconds.min() < MIN_SECONDS or seconds.max() > MAX_SECONDS):
        raise ValueError("bar timestamps must lie within 1978..3058")
    record = np.empty((count, _RECORD), dtype=np.uint8)
    record[:, 0] = field << 3 | 2
    record[:, 1] = _POINT
    record[:, 2] = 0x0A  # PricePoint.timestamp, a Timestamp of 12 bytes
    record[:, 3] = 12
    record[:, 4] = 0x08
    record[:, 5:10] = _varint5(seconds)
    record[:, 10] = 0x10
    record[:, 11:16] = _varint5(nanos)
    columns = (bars.open, bars.high, bars.low, bars.close, bars.volume)
    for index, (tag, column) in enumerate(zip(_DOUBLE_TAGS, columns, strict=True)):
        at = 16 + 9 * index
        record[:, at] = tag
        record[:, at + 1 : at + 9] = (
            np.ascontiguousarray(column, dtype="<f8").view(np.uint8).reshape(count, 8)
        )
    return record.tobytes()
