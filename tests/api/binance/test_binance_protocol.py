"""The Binance view's pure parts: symbols, stream names, control messages, book diffs, klines."""

from __future__ import annotations

import json
import random
import statistics
from datetime import UTC, datetime

import numpy as np
import pytest

from mdactors.api.binance.codec import decimal, depth_json, symbol_info
from mdactors.api.binance.protocol import (
    SessionStreams,
    WsError,
    decode_control,
    is_binance_message,
    parse_path,
    parse_stream,
)
from mdactors.api.binance.symbols import BinanceSymbols
from mdactors.domain.book import Level, OrderBook, book_at, synthesize_book
from mdactors.domain.book_diff import DiffWindow, book_diff
from mdactors.domain.candles import Candle
from mdactors.domain.klines import KLINE_INTERVALS, aggregate
from mdactors.domain.quotes import quote
from mdactors.domain.symbols import spec_for
from mdactors.domain.tick import Tick
from mdactors.domain.trade_backfill import backfill_trades
from mdactors.settings import ConfigError, load_settings

SYMBOLS = BinanceSymbols(["BTC/USD", "ETH/USD"], ["BTC/USD=BTC/USDT"])


def test_every_symbol_gets_base_and_quote_without_separator_and_aliases_are_opt_in():
    plain = BinanceSymbols(["BTC/USD", "ETH/USD"])
    assert [market.name for market in plain.markets] == ["BTCUSD", "ETHUSD"]
    assert plain.get("BTCUSDT") is None
    alias = SYMBOLS.get("btcusdt")
    assert alias is not None and (alias.key, alias.base, alias.quote) == ("BTC/USD", "BTC", "USDT")


def test_alias_setting_is_validated_naming_the_variable():
    env = {"DEFAULT_SYMBOLS": "BTC/USD", "BINANCE_SYMBOL_ALIASES": "BTC/USD=BTC/USDT"}
    assert load_settings(environ=env, dotenv=None).binance_symbol_aliases == ("BTC/USD=BTC/USDT",)
    for bad in ("BTC/USD=BTCUSDT", "ETH/USD=ETH/USDT", "BTC/USD=BTC/USD"):
        with pytest.raises(ConfigError) as caught:
            load_settings(environ={**env, "BINANCE_SYMBOL_ALIASES": bad}, dotenv=None)
        assert caught.value.variable == "BINANCE_SYMBOL_ALIASES"


def test_exchange_info_filters_match_tick_and_lot_sizes():
    for key in ("BTC/USD", "ADA/USD", "USDT/USD"):
        market = BinanceSymbols([key]).markets[0]
        filters = {f["filterType"]: f for f in symbol_info(market)["filters"]}
        assert float(filters["PRICE_FILTER"]["tickSize"]) == pytest.approx(market.spec.tick_size)
        assert float(filters["LOT_SIZE"]["stepSize"]) == pytest.approx(market.spec.lot_size)
        assert filters["NOTIONAL"]["minNotional"] == filters["MIN_NOTIONAL"]["minNotional"]
    assert decimal(43000.01) == "43000.01000000"


@pytest.mark.parametrize(
    ("name", "kind", "detail"),
    [
        ("btcusd@trade", "trade", ""),
        ("btcusdt@aggTrade", "aggTrade", ""),
        ("ethusd@depth", "depth", (0, 1000)),
        ("ethusd@depth@100ms", "depth", (0, 100)),
        ("ethusd@depth20@100ms", "depth", (20, 100)),
        ("ethusd@depth5", "depth", (5, 1000)),
        ("btcusd@kline_1M", "kline", "1M"),
        ("!miniTicker@arr", "allMiniTickers", ""),
    ],
)
def test_stream_names_parse(name: str, kind: str, detail: object):
    spec = parse_stream(name, SYMBOLS)
    assert spec.kind == kind and spec.name == name
    if kind == "depth":
        assert (spec.levels, spec.speed_ms) == detail
    if kind == "kline":
        assert spec.interval == detail


@pytest.mark.parametrize(
    "name",
    ["nope@trade", "BTCUSD@trade", "btcusd@kline_7m", "btcusd@depth7", "btcusd@depth@10ms",
     "btcusd@depth\u00b2", "btcusd", "btcusd@bogus", "x" * 500, 7],
)  # fmt: skip
def test_unknown_streams_are_invalid_requests(name: object):
    with pytest.raises(WsError) as caught:
        parse_stream(name, SYMBOLS)
    assert caught.value.code == 2


def test_paths_raw_combined_and_bounded():
    assert parse_path("/ws/0", 10) == (False, ["0"])
    assert parse_path("/ws/btcusd@trade", 10) == (False, ["btcusd@trade"])
    assert parse_path("/stream?streams=a@trade/b@depth", 10) == (True, ["a@trade", "b@depth"])
    with pytest.raises(WsError):
        parse_path("/stream?streams=" + "/".join(["btcusd@trade"] * 11), 10)


def test_control_messages_and_their_replies():
    state = SessionStreams(max_streams=3)
    subscribe = decode_control('{"method":"SUBSCRIBE","params":["btcusd@trade"],"id":1}', 1000)
    reply, added, _ = state.handle(subscribe, SYMBOLS)
    assert json.loads(reply) == {"result": None, "id": 1} and [s.name for s in added] == [
        "btcusd@trade"
    ]
    listing, _, _ = state.handle(
        decode_control('{"method":"LIST_SUBSCRIPTIONS","id":2}', 99), SYMBOLS
    )
    assert json.loads(listing) == {"result": ["btcusd@trade"], "id": 2}
    prop = decode_control('{"method":"SET_PROPERTY","params":["combined",true],"id":3}', 99)
    state.handle(prop, SYMBOLS)
    assert state.combined
    too_many = decode_control(
        '{"method":"SUBSCRIBE","params":["ethusd@trade","ethusd@ticker","ethusd@depth"],"id":4}',
        1000,
    )
    with pytest.raises(WsError) as caught:
        state.handle(too_many, SYMBOLS)
    assert caught.value.request_id == 4 and len(state.streams) == 1
    _, _, removed = state.handle(
        decode_control('{"method":"UNSUBSCRIBE","params":["btcusd@trade"],"id":5}', 99), SYMBOLS
    )
    assert [s.name for s in removed] == ["btcusd@trade"] and not state.by_key


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"\x00binary", 3),
        ("{not json", 3),
        ("[1,2]", 3),
        ('{"method":"SUBSCRIBEX","id":1}', 2),
        ('{"method":"SUBSCRIBE","params":"btcusd@trade","id":1}', 2),
        ('{"method":"SUBSCRIBE","params":[],"id":[1]}', 1),
        ('{"method":"SUBSCRIBE","params":["' + "x" * 300 + '"]}', 3),
    ],
)
def test_malformed_control_messages_get_binance_codes(frame: str | bytes, code: int):
    with pytest.raises(WsError) as caught:
        decode_control(frame, 256)
    assert caught.value.code == code


def test_first_message_with_a_method_is_binance():
    assert is_binance_message('{"method":"SUBSCRIBE","params":[],"id":1}')
    assert not is_binance_message('{"type":"subscribe","symbols":["BTC"]}')
    assert not is_binance_message(b'{"method":"x"}')


def test_applying_a_diff_to_the_old_book_gives_the_new_book_exactly():
    spec = spec_for("BTC/USD")
    old = synthesize_book(spec, 43000.0, 43001.0, 50, 7, 0)
    new = synthesize_book(spec, 43010.5, 43012.0, 50, 9, 0)
    bids, asks = book_diff(old, new)
    local = {"bids": dict(old.bids), "asks": dict(old.asks)}
    for side, changes in (("bids", bids), ("asks", asks)):
        for price, qty in changes:
            if qty == 0:
                local[side].pop(price)
            else:
                local[side][price] = qty
    assert sorted(local["bids"].items(), reverse=True) == new.bids
    assert sorted(local["asks"].items()) == new.asks
    assert depth_json(BinanceSymbols(["BTC/USD"]).markets[0], new, 5)["lastUpdateId"] == 9


def _ms(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def test_kline_buckets_follow_binance_weeks_on_monday_and_calendar_months():
    week, month = KLINE_INTERVALS["1w"], KLINE_INTERVALS["1M"]
    wednesday = _ms(2026, 11, 25, 13)
    assert week.start(wednesday) == _ms(2026, 11, 23)
    assert week.end(week.start(wednesday)) == _ms(2026, 11, 30)
    assert month.start(wednesday) == _ms(2026, 11, 1) and month.end(_ms(2026, 12, 1)) == _ms(
        2027, 1, 1
    )
    assert KLINE_INTERVALS["3m"].start(_ms(2026, 1, 1, 0, 4)) == _ms(2026, 1, 1, 0, 3)


def test_derived_intervals_aggregate_their_base_candles():
    candles = [
        Candle("BTC/USD", "1m", i * 60_000, 10.0 + i, 20.0 + i, 5.0, 11.0 + i, 1.0, 2, True)
        for i in range(7)
    ]
    klines = aggregate(candles, KLINE_INTERVALS["3m"], now_ms=7 * 60_000)
    assert [k.start_ms for k in klines] == [0, 180_000, 360_000]
    first = klines[0]
    assert (first.open, first.high, first.close, first.volume, first.trades) == (10, 22, 13, 3, 6)
    assert first.closed and not klines[-1].closed


def test_backfilled_trades_stay_inside_their_candles():
    spec = spec_for("BTC/USD")
    candle = Candle("BTC/USD", "1m", 0, 100.0, 101.0, 99.0, 100.5, 6.0, 60, True)
    trades = backfill_trades(spec, [candle], 60, np.random.default_rng(1))
    assert [t.id for t in trades] == list(range(1, 61))
    assert all(99.0 <= t.price <= 101.0 for t in trades)
    assert trades[0].price == 100.0 and trades[-1].price == 100.5
    assert trades == backfill_trades(spec, [candle], 60, np.random.default_rng(1))


def test_an_aggregated_diff_also_fixes_a_book_taken_in_between():
    spec = spec_for("BTC/USD")
    books = [synthesize_book(spec, 43000.0 + 7 * i, 43002.0 + 7 * i, 30, i, 0) for i in range(4)]
    bids, asks = book_diff(books[0], books[3], books[1:3])
    for middle in books[:3]:
        assert _apply(middle, bids, asks) == (books[3].bids, books[3].asks)


def _apply(
    book: OrderBook, bids: list[Level], asks: list[Level]
) -> tuple[list[Level], list[Level]]:
    local = {"bids": dict(book.bids), "asks": dict(book.asks)}
    for side, changes in (("bids", bids), ("asks", asks)):
        for price, qty in changes:
            if qty == 0:
                local[side].pop(price, None)
            else:
                local[side][price] = qty
    return sorted(local["bids"].items(), reverse=True), sorted(local["asks"].items())


def test_a_diff_carries_only_the_levels_that_changed():
    spec = spec_for("BTC/USD")
    old = synthesize_book(spec, 43000.10, 43004.50, 100, 7, 0)
    new = synthesize_book(spec, 43000.10, 43004.50, 100, 8, 0)
    bids, asks = book_diff(old, new)
    assert 0 < len(bids) + len(asks) < 20
    assert all(dict(old.bids).get(p) != q for p, q in bids)
    assert all(dict(old.asks).get(p) != q for p, q in asks)
    assert _apply(old, bids, asks) == (new.bids, new.asks)
    # The quote crossing a grid line: levels enter at the top, leave at the bottom (qty 0).
    # Queues keep the depth they had when drawn, so the book of the move reads the tick before.
    before = Tick("BTC/USD", 8, 43002.3, 43000.10, 43004.50, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    after = Tick("BTC/USD", 9, 43014.1, 43012.20, 43016.00, 0.0, 0, 0.0, 0.0, 0.0, 0.0, 0.0)
    moved = book_at(spec, after, 100, [before])
    bids, asks = book_diff(new, moved)
    assert len(bids) + len(asks) < 100
    assert (new.bids[-1][0], 0.0) in bids and (moved.asks[-1][0], moved.asks[-1][1]) in asks
    assert _apply(new, bids, asks) == (moved.bids, moved.asks)


def test_a_level_that_changed_and_came_back_in_between_is_still_sent():
    old = OrderBook("X/USD", [(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0), (12.0, 2.0)], 0, 1)
    middle = OrderBook("X/USD", [(10.0, 1.5), (8.0, 3.0)], [(11.0, 1.0), (12.0, 2.0)], 0, 2)
    new = OrderBook("X/USD", [(10.0, 1.0), (9.0, 2.0)], [(11.0, 1.0), (12.0, 2.0)], 0, 3)
    bids, asks = book_diff(old, new, [middle])
    assert sorted(bids) == [(8.0, 0.0), (9.0, 2.0), (10.0, 1.0)] and asks == []
    for start in (old, middle):
        assert _apply(start, bids, asks) == (new.bids, new.asks)


@pytest.mark.parametrize("key", ["BTC/USD", "ADA/USD", "USDT/USD"])
def test_aggregated_diffs_along_a_walk_rebuild_every_book_exactly(key: str):
    spec = spec_for(key)
    rng = random.Random(5)
    mid, books, ticks = spec.seed_price, [], []
    for seq in range(120):
        mid *= 1 + rng.gauss(0, 2e-5)
        bid, ask = quote(spec, mid, rng.random())
        ticks.append(Tick(key, seq, mid, bid, ask, 0.0, 0, 0.0, 0.0, mid, mid, 0.0))
        books.append(book_at(spec, ticks[-1], 50, ticks[:-1]))
    held, start, sizes = books[0], 0, []
    while start < len(books) - 1:
        end = min(len(books) - 1, start + rng.randint(1, 6))
        window = DiffWindow(books[start])
        for book in books[start + 1 : end + 1]:
            window.see(book)
        bids, asks = window.diff(books[end])
        for snapshot in books[start : end + 1]:  # a REST snapshot taken anywhere in between
            assert _apply(snapshot, bids, asks) == (books[end].bids, books[end].asks)
        assert _apply(held, bids, asks) == (books[end].bids, books[end].asks)
        # Nothing is sent that every book of the window already had.
        for side, changes in (("bids", bids), ("asks", asks)):
            for price, qty in changes:
                values = {dict(getattr(b, side)).get(price) for b in books[start : end + 1]}
                assert values != {qty if qty else None}
        held, start = books[end], end
        sizes.append(len(bids) + len(asks))
    assert statistics.mean(sizes) < 100
