"""Baseline WebSocket server: ``websockets`` (asyncio) with ``broadcast`` per tick.

Each symbol's generator encodes one ``ticker`` update per tick — the same
JSON shape as mdactors' (``type``, ``channel``, ``symbol``, ``seq``, ``ts``,
``data``) — and hands it to :func:`websockets.asyncio.server.broadcast` for
the clients of that symbol (``broadcast`` skips a client whose write buffer
is full: that is its slow-client policy). A client sends one
``{"type":"subscribe","symbols":[...]}`` and gets the latest tick of each
symbol as a ``snapshot``, then updates.

    python -m bench.baselines.ws_server --port 0 --symbols BTC/USD --interval 100ms
"""

from __future__ import annotations

import asyncio
import json

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.baselines.ticks import WalkTick, announce, main, paced_ticks


def encode(tick: WalkTick) -> str:
    """The ``ticker`` update of a tick (payload close in size to mdactors')."""
    price = tick.price
    data = {
        "price": price,
        "bid": round(price - 0.01, 2),
        "ask": round(price + 0.01, 2),
        "volume": 0.5,
        "change": 0.01,
        "change_percentage": 0.0001,
        "daily_high": price + 1.0,
        "daily_low": price - 1.0,
        "daily_volume": 1234.5,
        "timestamp": tick.ts_ns,
    }
    message = {"type": "update", "channel": "ticker", "symbol": tick.symbol, "seq": tick.seq}
    return json.dumps({**message, "ts": tick.ts_ns, "data": data}, separators=(",", ":"))


class Broadcaster:
    """Clients per symbol, fed by one generator task per symbol."""

    def __init__(self, symbols: list[str], interval: float) -> None:
        self.interval = interval
        self.clients: dict[str, set[ServerConnection]] = {symbol: set() for symbol in symbols}
        self.latest: dict[str, str] = {}

    async def generate(self, symbol: str) -> None:
        """Publish ``symbol``'s ticks forever."""
        async for tick in paced_ticks(symbol, self.interval):
            message = self.latest[symbol] = encode(tick)
            broadcast(self.clients[symbol], message)

    async def handle(self, ws: ServerConnection) -> None:
        """One connection: wait for its subscribe, send snapshots, then it gets broadcasts."""
        request = json.loads(await ws.recv())
        symbols = [symbol for symbol in request.get("symbols", ()) if symbol in self.clients]
        for symbol in symbols:
            if symbol in self.latest:
                await ws.send(self.latest[symbol].replace('"update"', '"snapshot"', 1))
            self.clients[symbol].add(ws)
        try:
            await ws.wait_closed()
        finally:
            for symbol in symbols:
                self.clients[symbol].discard(ws)


async def run(port: int, symbols: list[str], interval: float) -> None:
    """Serve until cancelled."""
    broadcaster = Broadcaster(symbols, interval)
    async with (
        serve(broadcaster.handle, "127.0.0.1", port, compression=None) as server,
        asyncio.TaskGroup() as generators,
    ):
        for symbol in symbols:
            generators.create_task(broadcaster.generate(symbol))
        announce("ws", server.sockets[0].getsockname()[1])
        await server.serve_forever()


if __name__ == "__main__":
    main(__doc__.splitlines()[0], run)
