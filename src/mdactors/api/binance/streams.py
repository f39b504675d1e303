"""Binance market streams on the WebSocket port: trio I/O around
:mod:`mdactors.api.binance.protocol`.

Paths: ``/ws/<stream>`` (raw; a segment that is not a stream name, such as
ccxt's ``/ws/0``, is ignored), ``/stream?streams=a/b`` (combined, each event
wrapped as ``{"stream": ..., "data": ...}``), and ``/`` or ``/ws`` whose first
client message has a ``method`` (the connection then speaks Binance; see
:meth:`mdactors.api.ws.server.WsServer.takeover`). USD-M futures, over the
perpetuals, on ``/fws/<stream>`` and ``/fstream?streams=a/b`` (see
:mod:`mdactors.api.binance.futures_streams`).

Each connection is a :class:`BinanceSession`
(an :class:`~mdactors.api.ws.session.OutboxSession`): a reader applying control
messages, and the subscribed symbols' :class:`~mdactors.engine.binance_feed.SymbolFeed`
Topics (and, for futures, the :class:`~mdactors.engine.futures_feed.FuturesFeed`'s)
sent one event per frame, on the engine's stream outlet
(:mod:`mdactors.engine.outlet`) like every WebSocket session:

- caught up, the session's writer parks and the fan-out of each Topic it
  follows (a :class:`~mdactors.engine.fanout.StreamFanOut` of
  :attr:`BinanceStreams.broadcasts`) writes that Topic's events: rendered
  once per event and *rendering* (venue, raw or combined wrapping, the
  streams in order: :meth:`BinanceSession.rendering`) and written to every
  session of that rendering with a non-blocking ``send``. Each event's bytes
  are also encoded once per stream for all renderings and cached on the
  event (``wire``);
- a session whose write would block goes back to its writer task, which takes
  at most ``MAX_EVENTS_PER_TOPIC`` events of a Topic at once (the older ones
  dropped, ``conflated``: a depth gap the client can detect) and hands each
  blocking write to the outlet: not done within ``SLOW_CONSUMER_TIMEOUT``, the
  session is closed with 1008 (its TCP connection reset when the frame was
  cut), what it will not get counted ``disconnected``;
- publication latency is observed once per delivered event (from the tick's
  stamp, or the event's ``E``).

What Binance supplies to the outlet is its own part only: the events of a
batch (:meth:`BinanceSession._updates`, ~20 lines with the ``wire`` cache),
which sessions share them (``rendering``, 4 lines), ``broadcast`` and
``broadcast_topics`` (any number of Topics: each event is a frame of its
own), and its sessions' host (:class:`BinanceStreams`: the fan-outs and the
nursery they run in, ~8 lines). The non-blocking write, the blocking write
and the 1008/reset are the WebSocket session's.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import trio
from trio_websocket import WebSocketConnection, WebSocketRequest

from mdactors.api.binance.codec import (
    agg_trade_event,
    all_tickers_event,
    book_ticker_event,
    combined,
    depth_update_event,
    kline_event,
    mini_ticker_event,
    partial_depth_event,
    tick_print,
    ticker_24hr_json,
    ticker_event,
    top_of_book,
    trade_event,
)
from mdactors.api.binance.futures_streams import FuturesEncoder
from mdactors.api.binance.protocol import (
    ALL_STREAMS_KEY,
    BINANCE_WS_ERRORS,
    FUTURES,
    FUTURES_KEY,
    SPOT,
    SessionStreams,
    StreamSpec,
    Venue,
    WsError,
    decode_control,
    error_reply,
    is_binance_message,
    parse_path,
    parse_stream,
)
from mdactors.api.binance.symbols import BinanceMarket, BinanceSymbols
from mdactors.api.ws.broadcast import broadcasts
from mdactors.api.ws.session import CLOSE_GOING_AWAY, OutboxSession
from mdactors.domain.tick import Tick
from mdactors.engine.binance_feed import (
    AllTickers,
    AllTickersFeed,
    DepthUpdate,
    FeedItem,
    SymbolFeed,
)
from mdactors.engine.derived_actor import PerpetualActor
from mdactors.engine.fanout import FanOuts, StreamFanOut
from mdactors.engine.futures_feed import FuturesFeed, FuturesItem
from mdactors.engine.subscription import StreamClosed, TooManyStreams
from mdactors.engine.topic import Topic

if TYPE_CHECKING:
    from mdactors.api.ws.server import WsServer

__all__ = ["BinanceSession", "BinanceStreams"]

CLIENT_TYPE = "binance"
OUTBOX_LIMIT = 64
MAX_EVENTS_PER_TOPIC = 256
"""Most events of one Topic taken at once; a session further behind loses the oldest."""


class BinanceStreams:
    """The Binance protocol on one :class:`~mdactors.api.ws.server.WsServer`: feeds, routes,
    sessions."""

    def __init__(self, server: WsServer) -> None:
        self.server = server
        ctx = self.ctx = server.ctx
        self.symbols = BinanceSymbols(ctx.market.symbols, ctx.settings.binance_symbol_aliases)
        self.feeds = {
            key: SymbolFeed(
                actor,
                ctx.view,
                ctx.settings.binance_book_depth,
                ctx.market.wall_clock,
            )
            for key, actor in ctx.market.actors.items()
        }
        self.all_tickers = AllTickersFeed(ctx.market.actors)
        self.futures_symbols = BinanceSymbols(
            ctx.market.symbols, ctx.settings.binance_symbol_aliases, perpetual=True
        )
        self.futures_feed = FuturesFeed(
            {k: a for k, a in ctx.market.actors.items() if isinstance(a, PerpetualActor)},
            ctx.market.wall_clock,
        )
        self.futures = FuturesEncoder(self.futures_symbols, ctx.view)
        self.sessions: set[BinanceSession] = set()
        self.broadcasts: FanOuts[StreamFanOut[Any]] = broadcasts()
        """The fast paths of the feeds' Topics (their own: the keys are the JSON
        protocol's too, over other Topics); they run in :meth:`run`'s nursery."""
        self.slow_disconnects = 0
        """Sessions closed as slow consumers."""
        server.prefix_routes["/ws/"] = self._route
        server.routes["/stream"] = self._route
        server.prefix_routes["/fws/"] = self._route_futures
        server.routes["/fws"] = self._route_futures
        server.routes["/fstream"] = self._route_futures
        server.takeover = (is_binance_message, self._take_over)

    async def _route(self, _server: WsServer, request: WebSocketRequest) -> None:
        await self.serve_path(request)

    async def _route_futures(self, _server: WsServer, request: WebSocketRequest) -> None:
        await self.serve_path(request, FUTURES)

    async def _take_over(self, ws: WebSocketConnection, first_message: str | bytes) -> None:
        await self.serve(ws, False, [], first_message)

    def topic(self, key: str) -> Topic[FeedItem] | Topic[AllTickers] | Topic[FuturesItem]:
        """The Topic feeding subscription ``key`` (a symbol key, :data:`ALL_STREAMS_KEY`
        or :data:`FUTURES_KEY`)."""
        if key == FUTURES_KEY:
            return self.futures_feed.topic
        return self.all_tickers.topic if key == ALL_STREAMS_KEY else self.feeds[key].topic

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every feed until cancelled, and the fan-outs of their Topics."""
        try:
            async with trio.open_nursery() as nursery:
                for feed in self.feeds.values():
                    nursery.start_soon(feed.run)
                nursery.start_soon(self.all_tickers.run)
                if self.futures_feed.actors:
                    nursery.start_soon(self.futures_feed.run)
                self.broadcasts.nursery = nursery
                task_status.started()
        finally:
            self.broadcasts.nursery = None

    async def serve_path(self, request: WebSocketRequest, venue: Venue = SPOT) -> None:
        """``/ws/<stream>...`` and ``/stream?streams=...`` (futures: ``/fws``, ``/fstream``)."""
        try:
            max_streams = self.ctx.settings.binance_max_streams
            combined_mode, names = parse_path(request.path, max_streams, venue)
        except WsError as error:
            await request.reject(400, body=error.msg.encode() + b"\n")
            return
        ws = await request.accept()
        await self.serve(ws, combined_mode, names, None, venue)

    async def serve(
        self,
        ws: WebSocketConnection,
        combined_mode: bool,
        names: list[str],
        first_message: str | bytes | None,
        venue: Venue = SPOT,
    ) -> None:
        """Run one Binance session of ``venue`` on an accepted connection."""
        session = BinanceSession(self, ws, combined_mode, venue)
        self.sessions.add(session)
        try:
            await session.run(names, first_message)
        finally:
            self.sessions.discard(session)

    def close_all(self) -> None:
        """Ask every session to close with 1001 (drain)."""
        for session in list(self.sessions):
            session.request_close(CLOSE_GOING_AWAY, "server shutting down")


class BinanceSession(OutboxSession):
    """One Binance connection: its streams, a reader and a writer."""

    client_type = CLIENT_TYPE
    outbox_limit = OUTBOX_LIMIT
    take_limit = MAX_EVENTS_PER_TOPIC
    broadcast = True

    def __init__(
        self,
        streams: BinanceStreams,
        ws: WebSocketConnection,
        combined_mode: bool,
        venue: Venue = SPOT,
    ):
        super().__init__(streams, ws)
        self.owner = streams
        max_streams = self.ctx.settings.binance_max_streams
        self.state = SessionStreams(max_streams, combined_mode, venue)
        # Each event is a frame of its own: any number of Topics can be served fast.
        self.broadcast_topics = max_streams
        futures = venue is FUTURES
        self.symbols = streams.futures_symbols if futures else streams.symbols
        self._encoder = streams.futures.encode if futures else self._encode

    # ------------------------------------------------------------------ control

    def _apply(self, added: list[StreamSpec], removed: list[StreamSpec]) -> None:
        for spec in added:
            self._demand(spec, 1)
        for spec in removed:
            self._demand(spec, -1)
        keys = set(self.state.by_key)
        if self.subscription is None or keys != set(self.subscription.topics):
            self._follow({key: self.owner.topic(key) for key in self.state.by_key})

    def _demand(self, spec: StreamSpec, delta: int) -> None:
        if spec.market is None or spec.kind not in ("depth", "kline"):
            return
        feed = self.owner.feeds[spec.market.key]
        arg: object = spec.speed_ms if spec.kind == "depth" else spec.interval
        if delta > 0:
            feed.want(spec.kind, arg)
        else:
            feed.unwant(spec.kind, arg)

    def _on_message(self, data: str | bytes) -> bool:
        try:
            control = decode_control(data, self.ctx.settings.max_request_bytes)
            reply, added, removed = self.state.handle(control, self.symbols)
            try:
                self._apply(added, removed)
            except TooManyStreams as error:
                self.state.remove([spec.name for spec in added])
                for spec in added:
                    self._demand(spec, -1)
                refused = BINANCE_WS_ERRORS(error)
                refused.request_id = control.id
                raise refused from None
            self._send_later(reply)
        except WsError as error:
            self._send_later(error_reply(error))
        except StreamClosed as error:
            self.request_close(CLOSE_GOING_AWAY, BINANCE_WS_ERRORS(error).msg)
            return False
        return True

    # ------------------------------------------------------------------ run

    async def run(self, names: list[str], first_message: str | bytes | None) -> None:
        """Follow the path's streams, then serve until either side closes."""
        specs = []
        for name in names:
            try:
                specs.append(parse_stream(name, self.symbols, self.state.venue))
            except WsError as error:
                if "@" in name or name.startswith("!"):
                    self._send_later(error_reply(error))
        try:
            self._apply(self.state.add(specs), [])
            if first_message is not None:
                self._on_message(first_message)
            await self._serve()
        except (StreamClosed, TooManyStreams) as error:
            self._closing = (CLOSE_GOING_AWAY, BINANCE_WS_ERRORS(error).msg[:100])
        finally:
            for spec in self.state.streams.values():
                self._demand(spec, -1)
            self._release()
        await self._close()

    # ------------------------------------------------------------------ writer

    def rendering(self) -> Hashable:
        """Sessions of one venue and wrapping (raw or combined) following the same
        streams in the same order write the same frames for the same events."""
        state = self.state
        return (state.venue.name, state.combined, tuple(state.streams))

    def _updates(self, key: str, items: list[FeedItem], messages: list[bytes]) -> None:
        """One message per event ``key``'s ``items`` carry for each followed stream,
        wrapped as ``{"stream", "data"}`` on a combined connection."""
        specs = self.state.by_key.get(key, ())
        combined_mode = self.state.combined
        for item in items:
            for spec in specs:
                data = self._render(spec, item)
                if data is not None:
                    messages.append(combined(spec.name, data) if combined_mode else data)

    # ------------------------------------------------------------------ encodings

    def _render(self, spec: StreamSpec, item: FeedItem) -> bytes | None:
        """The event of ``spec`` carried by ``item`` (``None`` if it carries none),
        encoded once per item and stream and cached on the item."""
        wire = item.wire
        cached = wire.get(spec.name)
        if cached is not None:
            return cached
        data = self._encoder(spec, item)
        if data is not None:
            wire[spec.name] = data
        return data

    def _encode(self, spec: StreamSpec, item: FeedItem) -> bytes | None:
        kind = spec.kind
        market = spec.market
        if isinstance(item, AllTickers):
            if kind not in ("allTickers", "allMiniTickers"):
                return None
            rows = [self._ticker_row(m, item.ticks[m.key]) for m in self.owner.symbols.markets]
            return all_tickers_event(rows, item.event_ms, kind == "allMiniTickers")
        if market is None:
            return None
        if isinstance(item, Tick):
            return self._encode_tick(spec, market, item)
        if isinstance(item, DepthUpdate):
            if kind != "depth" or spec.speed_ms != item.speed_ms:
                return None
            if spec.levels:
                return partial_depth_event(market, item.book, spec.levels)
            return depth_update_event(
                market, item.first_id, item.last_id, item.event_ms, item.bids, item.asks
            )
        if kind != "kline" or spec.interval != item.interval:
            return None
        return kline_event(
            market, item.interval, item.kline, item.event_ms, item.first_id, item.last_id
        )

    def _encode_tick(self, spec: StreamSpec, market: BinanceMarket, tick: Tick) -> bytes | None:
        kind = spec.kind
        if kind in ("trade", "aggTrade"):
            printed = tick_print(tick)
            encode = trade_event if kind == "trade" else agg_trade_event
            return None if printed is None else encode(market, *printed)
        if kind == "bookTicker":
            return book_ticker_event(market, tick.seq, top_of_book(self.ctx.view.book(tick, 1)))
        if kind == "ticker":
            return ticker_event(self._ticker_row(market, tick), tick.ts_ms)
        if kind == "miniTicker":
            return mini_ticker_event(self._ticker_row(market, tick), tick.ts_ms)
        return None

    def _ticker_row(self, market: BinanceMarket, tick: Tick) -> dict[str, Any]:
        view = self.ctx.view
        return ticker_24hr_json(
            market, tick, view.stats_24h(market.key), top_of_book(view.book(tick, 1))
        )
