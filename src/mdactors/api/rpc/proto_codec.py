"""Tick → ``marketdata.PriceUpdate`` as protobuf bytes and proto3 JSON, each encoded once.

Pure functions over value types (no trio, no sockets). A tick's encodings are
cached in ``Tick.wire`` and shared by every stream of that format, so one tick
costs one serialisation per format however many clients receive it.

Streams echo the caller's spelling of the symbol (``btc-usd`` stays
``btc-usd``) in field 1. To keep encode-once, the cached body holds every
field *except* ``symbol``; each stream prepends its own pre-encoded
``symbol`` field. Protobuf fields may come in any order on the wire and
protobuf-python serialises in field-number order, so ``prefix + body`` is
byte-for-byte what serialising the whole message would give. The JSON form
uses the same trick with the ``"symbol"`` member.
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from mdactors._proto import marketdata_pb2 as pb
from mdactors.api.codec import LIVE_SOURCE
from mdactors.domain.perpetual import PerpetualSnapshot
from mdactors.domain.tick import Tick

__all__ = [
    "ENCODE_ONCE",
    "Encoded",
    "json_symbol_prefix",
    "message_json",
    "price_update",
    "price_update_json",
    "price_update_pb",
    "symbol_prefix",
    "timestamp",
]

#: Cache encodings in ``Tick.wire``. Only the fan-out benchmark turns this off,
#: to measure what encode-once saves.
ENCODE_ONCE = True

_PB_BODY = "pb.update"
_JSON_BODY = "json.update"


def timestamp(ts_ns: int) -> Timestamp:
    """A ``google.protobuf.Timestamp`` from nanoseconds since the epoch."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return Timestamp(seconds=seconds, nanos=nanos)


def perpetual_info(contract: PerpetualSnapshot) -> pb.PerpetualInfo:
    """The ``PerpetualInfo`` of a perpetual's tick."""
    return pb.PerpetualInfo(
        mark_price=contract.mark_price,
        index_price=contract.index_price,
        premium_index=contract.premium_index,
        funding_rate=contract.funding_rate,
        next_funding_time=timestamp(contract.next_funding_ms * 1_000_000),
        interest_rate=contract.interest_rate,
        open_interest=contract.open_interest,
    )


def price_update(tick: Tick, symbol: str = "") -> pb.PriceUpdate:
    """The ``PriceUpdate`` of ``tick``; ``symbol`` is the spelling to echo (empty: none).
    A perpetual's update carries its contract state in ``perpetual``."""
    contract = tick.contract
    return pb.PriceUpdate(
        symbol=symbol,
        price=tick.price,
        volume=tick.volume,
        timestamp=timestamp(tick.ts_ns),
        source=LIVE_SOURCE,
        change_info=pb.PriceChangeInfo(
            change_amount=tick.change,
            change_percentage=tick.change_pct,
            daily_high=tick.day_high,
            daily_low=tick.day_low,
            daily_volume=tick.day_volume,
        ),
        sequence=tick.seq,
        bid=tick.bid,
        ask=tick.ask,
        timestamp_ns=tick.ts_ns,
        key=tick.symbol,
        perpetual=None if contract is None else perpetual_info(contract),
    )


def symbol_prefix(spelling: str) -> bytes:
    """The encoded ``symbol`` field (field 1) of a ``PriceUpdate``."""
    return pb.PriceUpdate(symbol=spelling).SerializeToString()


def price_update_pb(tick: Tick, prefix: bytes) -> bytes:
    """Protobuf bytes of ``tick``'s update, ``prefix`` from :func:`symbol_prefix`."""
    if not ENCODE_ONCE:
        return prefix + price_update(tick).SerializeToString()
    body = tick.wire.get(_PB_BODY)
    if body is None:
        body = tick.wire[_PB_BODY] = price_update(tick).SerializeToString()
    return prefix + body


def message_json(message: object) -> bytes:
    """Proto3 JSON (camelCase names, compact) of a protobuf message."""
    as_dict = json_format.MessageToDict(message)  # type: ignore[arg-type]
    return json.dumps(as_dict, separators=(",", ":")).encode()


def json_symbol_prefix(spelling: str) -> bytes:
    """``{"symbol":"…",`` : the opening of a JSON ``PriceUpdate`` for one spelling."""
    return b'{"symbol":' + json.dumps(spelling).encode() + b","


def price_update_json(tick: Tick, prefix: bytes) -> bytes:
    """Proto3 JSON of ``tick``'s update, ``prefix`` from :func:`json_symbol_prefix`."""
    body = tick.wire.get(_JSON_BODY) if ENCODE_ONCE else None
    if body is None:
        # MessageToDict always emits price/timestamp/source/key, so the body
        # is never "{}" and the member after "symbol" needs the comma.
        body = message_json(price_update(tick))[1:]
        if ENCODE_ONCE:
            tick.wire[_JSON_BODY] = body
    return prefix + body


class Encoded:
    """Pre-encoded protobuf bytes that purerpc sends as they are.

    purerpc calls ``message.SerializeToString()``; returning cached bytes makes
    encode-once work without copying. ``ts_ns`` (0 if none) is the publish
    time of the tick inside, for the publication-latency histogram.
    """

    __slots__ = ("data", "ts_ns")

    def __init__(self, data: bytes, ts_ns: int = 0) -> None:
        self.data = data
        self.ts_ns = ts_ns

    def SerializeToString(self) -> bytes:
        """The encoded message."""
        return self.data
