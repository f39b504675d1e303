"""The WebSocket protocol without a socket: parsing, session state, encodings."""

from __future__ import annotations

import json

import pytest

from mdactors.api.ws.protocol import (
    BOOK_DEFAULT_DEPTH,
    Channel,
    ListRequest,
    Ping,
    ProtocolError,
    SessionState,
    Subscribe,
    Unsubscribe,
    batch_frame,
    decode_client_message,
    error_message,
    heartbeat_message,
    resolve_all,
    subscribed_message,
    ticker_snapshot,
    ticker_update,
    trades_update,
)
from mdactors.domain.candles import Candle, fold_tick
from mdactors.domain.symbols import SymbolError, normalize_symbol
from mdactors.domain.tick import Tick, trade_of
from mdactors.engine.market import UnknownSymbol


def decode(data: str | bytes, *, max_bytes: int = 4096, max_symbols: int = 3):
    return decode_client_message(data, max_bytes=max_bytes, max_symbols=max_symbols)


def make_tick(seq: int = 7, price: float = 100.0, change: float = 0.5, volume: float = 2.0) -> Tick:
    return Tick("BTC/USD", seq, price, 99.9, 100.1, volume, 1_700_000_000_123_456_789, change,
                0.5, 101.0, 98.0, 50.0)  # fmt: skip


def resolve(raw: str) -> str:
    key = normalize_symbol(raw)
    if key not in {"BTC/USD", "ETH/USD", "SOL/USD", "ADA/USD"}:
        raise UnknownSymbol(key)
    return key


# ------------------------------------------------------------------ channels


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("ticker", "ticker"),
        ("TRADES", "trades"),
        ("candles:1m", "candles:1m"),
        ("candles:4h", "candles:4h"),
        ("book", "book"),
        (f"book:{BOOK_DEFAULT_DEPTH}", "book"),
        ("book:25", "book:25"),
    ],
)
def test_channel_names_are_canonical(text: str, name: str) -> None:
    assert Channel.parse(text).name == name


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("quotes", "bad_channel"),
        ("ticker:1m", "bad_channel"),
        ("candles", "bad_interval"),
        ("candles:2m", "bad_interval"),
        ("book:0", "bad_channel"),
        ("book:101", "bad_channel"),
        ("book:x", "bad_channel"),
        ("book:\u00b2", "bad_channel"),
        (5, "bad_channel"),
    ],
)
def test_bad_channels_are_named_errors(text: object, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        Channel.parse(text)
    assert caught.value.code == code


# ------------------------------------------------------------------ client messages


def test_subscribe_defaults_to_ticker_and_keeps_id() -> None:
    message = decode('{"type":"subscribe","symbols":["BTC","btc"],"id":"a1"}')
    assert message == Subscribe(("BTC", "btc"), (Channel("ticker"),), "a1")


def test_subscribe_deduplicates_symbols_and_channels() -> None:
    message = decode(
        '{"type":"subscribe","symbols":["BTC","BTC"],"channels":["book","book:10","trades"]}'
    )
    assert isinstance(message, Subscribe)
    assert message.symbols == ("BTC",)
    assert [channel.name for channel in message.channels] == ["book", "trades"]


def test_unsubscribe_without_channels_means_all() -> None:
    assert decode('{"type":"unsubscribe","symbols":["ETH"]}') == Unsubscribe(("ETH",), None)


def test_ping_and_list() -> None:
    assert decode('{"type":"ping","id":3}') == Ping(3)
    assert decode('{"type":"list"}') == ListRequest()


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b'{"type":"ping"}', "binary_not_supported"),
        ("x" * 5000, "message_too_large"),
        ("{not json", "invalid_json"),
        ("[1,2]", "invalid_message"),
        ('{"type":"dance"}', "unknown_type"),
        ("{}", "unknown_type"),
        ('{"type":"subscribe"}', "invalid_message"),
        ('{"type":"subscribe","symbols":[]}', "invalid_message"),
        ('{"type":"subscribe","symbols":[1]}', "invalid_message"),
        ('{"type":"subscribe","symbols":"BTC"}', "invalid_message"),
        ('{"type":"subscribe","symbols":["A","B","C","D"]}', "too_many_symbols"),
        ('{"type":"subscribe","symbols":["BTC"],"channels":["nope"]}', "bad_channel"),
        ('{"type":"subscribe","symbols":["BTC"],"channels":["candles:7m"]}', "bad_interval"),
        ('{"type":"subscribe","symbols":["BTC"],"channels":[]}', "invalid_message"),
        ('{"type":"ping","id":{"a":1}}', "invalid_message"),
        ('{"type":"ping","id":true}', "invalid_message"),
    ],
)
def test_malformed_messages_get_their_own_code(data: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode(data)
    assert caught.value.code == code


def test_errors_echo_the_request_id() -> None:
    with pytest.raises(ProtocolError) as caught:
        decode('{"type":"subscribe","id":9,"symbols":["BTC"],"channels":["x"]}')
    body = json.loads(error_message(caught.value))
    assert body["type"] == "error"
    assert body["id"] == 9
    assert body["code"] == "bad_channel"
    assert body["message"]


def test_resolve_all_names_unknown_and_malformed_symbols() -> None:
    assert resolve_all(["btc-usd", "ETH"], resolve, None) == [
        ("btc-usd", "BTC/USD"),
        ("ETH", "ETH/USD"),
    ]
    with pytest.raises(ProtocolError) as unknown:
        resolve_all(["BTC", "ZZZ"], resolve, 1)
    assert (unknown.value.code, unknown.value.details["symbol"]) == ("unknown_symbol", "ZZZ")
    with pytest.raises(ProtocolError) as malformed:
        resolve_all(["B T C"], resolve, None)
    assert malformed.value.code == "invalid_symbol"
    assert issubclass(SymbolError, ValueError)


# ------------------------------------------------------------------ session state


def test_subscribe_reports_only_new_channels_and_new_keys() -> None:
    state = SessionState(max_symbols=5)
    first = state.subscribe([("btc", "BTC/USD")], [Channel("ticker")])
    assert first.new_keys == ["BTC/USD"]
    again = state.subscribe([("BTC-USD", "BTC/USD")], [Channel("ticker"), Channel("trades")])
    assert again.new_keys == []
    assert [(alias, channel.name) for alias, _, channel in again.added] == [("BTC-USD", "trades")]
    assert state.table() == [
        {"symbol": "BTC-USD", "key": "BTC/USD", "channels": ["ticker", "trades"]}
    ]


def test_symbol_limit_is_all_or_nothing() -> None:
    state = SessionState(max_symbols=2)
    state.subscribe([("BTC", "BTC/USD")], [Channel("ticker")])
    with pytest.raises(ProtocolError) as caught:
        state.subscribe([("ETH", "ETH/USD"), ("SOL", "SOL/USD")], [Channel("ticker")])
    assert caught.value.code == "too_many_symbols"
    assert state.keys == ["BTC/USD"]


def test_unsubscribe_removes_channels_then_the_symbol() -> None:
    state = SessionState(max_symbols=5)
    state.subscribe([("BTC", "BTC/USD")], [Channel("ticker"), Channel("trades")])
    state.mark_snapshot("BTC/USD", Channel("ticker"), 10)
    assert state.unsubscribe(["BTC/USD"], [Channel("ticker")]) == [("BTC", "BTC/USD", ["ticker"])]
    assert state.keys == ["BTC/USD"]
    assert state.unsubscribe(["BTC/USD", "ETH/USD"], None) == [("BTC", "BTC/USD", ["trades"])]
    assert state.keys == []
    assert state.since == {}


def test_updates_at_or_before_the_snapshot_are_skipped() -> None:
    state = SessionState(max_symbols=5)
    ticker = Channel("ticker")
    state.subscribe([("BTC", "BTC/USD")], [ticker])
    state.mark_snapshot("BTC/USD", ticker, 41)
    assert not state.wants("BTC/USD", ticker, 40)
    assert not state.wants("BTC/USD", ticker, 41)
    assert state.wants("BTC/USD", ticker, 42)


# ------------------------------------------------------------------ encodings


def test_ticker_update_is_encoded_once_per_tick() -> None:
    tick = make_tick()
    first = ticker_update(tick)
    assert ticker_update(tick) is first
    body = json.loads(first)
    assert body["type"] == "update"
    assert (body["channel"], body["symbol"], body["seq"], body["ts"]) == (
        "ticker",
        "BTC/USD",
        7,
        tick.ts_ns,
    )
    assert body["data"]["price"] == 100.0
    assert body["data"]["timestamp"].endswith("Z")


def test_ticker_snapshot_is_the_update_typed_snapshot() -> None:
    tick = make_tick()
    snapshot = json.loads(ticker_snapshot(tick))
    update = json.loads(ticker_update(tick))
    assert snapshot.pop("type") == "snapshot"
    update.pop("type")
    assert snapshot == update


def test_trade_is_at_the_touch_of_the_side_that_moved() -> None:
    up = trade_of(make_tick(change=1.0))
    down = trade_of(make_tick(change=-1.0))
    assert up is not None and (up.side, up.price) == ("buy", 100.1)
    assert down is not None and (down.side, down.price) == ("sell", 99.9)
    assert trade_of(make_tick(volume=0.0)) is None
    tick = make_tick()
    trade = trade_of(tick)
    assert trade is not None
    body = json.loads(trades_update(tick, trade))
    assert body["channel"] == "trades"
    assert body["data"] == [
        {"id": 7, "price": 100.1, "quantity": 2.0, "side": "buy", "ts": tick.ts_ns}
    ]


def test_batch_wraps_several_messages_and_passes_one_through() -> None:
    one = heartbeat_message(5)
    assert batch_frame([one]) is one
    body = json.loads(batch_frame([one, heartbeat_message(6)]))
    assert body == {
        "type": "batch",
        "messages": [{"type": "heartbeat", "ts": 5}, {"type": "heartbeat", "ts": 6}],
    }


def test_subscribed_groups_channels_per_symbol_as_sent() -> None:
    state = SessionState(max_symbols=5)
    result = state.subscribe(
        [("btc-usd", "BTC/USD"), ("ETH", "ETH/USD")], [Channel("ticker"), Channel("book", depth=5)]
    )
    body = json.loads(subscribed_message(result, "r"))
    assert body == {
        "type": "subscribed",
        "id": "r",
        "subscriptions": [
            {"symbol": "btc-usd", "key": "BTC/USD", "channels": ["ticker", "book:5"]},
            {"symbol": "ETH", "key": "ETH/USD", "channels": ["ticker", "book:5"]},
        ],
    }


def test_fold_tick_extends_or_starts_a_candle() -> None:
    tick = make_tick(price=105.0)
    start = tick.ts_ms - tick.ts_ms % 60_000
    candle = Candle("BTC/USD", "1m", start, 100.0, 101.0, 99.0, 100.5, 3.0, 4)
    folded = fold_tick(candle, tick, "1m")
    assert (folded.open, folded.high, folded.low, folded.close) == (100.0, 105.0, 99.0, 105.0)
    assert (folded.volume, folded.trades) == (5.0, 5)
    assert candle.close == 100.5
    older = Candle("BTC/USD", "1m", start - 60_000, 1.0, 1.0, 1.0, 1.0, 1.0, 1)
    fresh = fold_tick(older, tick, "1m")
    assert (fresh.start_ms, fresh.open, fresh.volume) == (start, 105.0, 2.0)
