"""Binance stream fan-out: messages/s and server CPU per message for N subscribers.

Usage: ``python -m bench.binance_fanout [--subscribers 200] [--seconds 10]
[--interval 50ms] [--symbol btcusd] [--futures]``.

Starts ``mdactors serve`` in a subprocess on free loopback ports, opens
``--subscribers`` connections to ``/stream?streams=<s>@depth@100ms/<s>@trade``
(one combined connection per subscriber, as python-binance's multiplex socket
does; with ``--futures``, USD-M's ``/fstream?streams=<s>@depth@100ms/<s>@markPrice@1s``
over the perpetual BTC/USD-PERP), lets them settle, then counts every message received during the
window. Server CPU is read from ``/proc/<pid>/stat`` over the same window, so
µs/message is server CPU only (the clients run in this process). Prints one
JSON object, with the machine's load average at the window's start and end
(the numbers are only comparable at a similar load).
"""

from __future__ import annotations

import argparse
import json
import time

import trio
from trio_websocket import open_websocket_url

from bench.machine import cpu_seconds, load_average
from bench.servers import start_mdactors

SETTLE_S = 2.0


async def _subscriber(url: str, counts: list[int], index: int, ready: trio.Event) -> None:
    async with open_websocket_url(url, max_message_size=1 << 22) as ws:
        await ws.get_message()
        ready.set()
        while True:
            await ws.get_message()
            counts[index] += 1


SPOT_STREAMS = ("/stream", ("depth@100ms", "trade"))
FUTURES_STREAMS = ("/fstream", ("depth@100ms", "markPrice@1s"))


async def measure(
    ws_port: int,
    pid: int,
    subscribers: int,
    seconds: float,
    symbol: str,
    streams: tuple[str, tuple[str, ...]] = SPOT_STREAMS,
) -> dict:
    """Run the subscribers against a running server and measure one window."""
    path, kinds = streams
    names = [f"{symbol}@{kind}" for kind in kinds]
    url = f"ws://127.0.0.1:{ws_port}{path}?streams={'/'.join(names)}"
    counts = [0] * subscribers
    async with trio.open_nursery() as nursery:
        readies = []
        for index in range(subscribers):
            ready = trio.Event()
            readies.append(ready)
            nursery.start_soon(_subscriber, url, counts, index, ready)
        with trio.fail_after(60):
            for ready in readies:
                await ready.wait()
        await trio.sleep(SETTLE_S)
        load_start = load_average()
        start_counts, start_cpu, start_wall = sum(counts), cpu_seconds(pid), time.monotonic()
        await trio.sleep(seconds)
        messages = sum(counts) - start_counts
        cpu = cpu_seconds(pid) - start_cpu
        wall = time.monotonic() - start_wall
        nursery.cancel_scope.cancel()
    return {
        "subscribers": subscribers,
        "path": path,
        "streams": names,
        "seconds": round(wall, 2),
        "messages": messages,
        "messages_per_s": round(messages / wall, 1),
        "server_cpu_percent": round(100 * cpu / wall, 1),
        "server_cpu_us_per_message": round(cpu / messages * 1e6, 2) if messages else None,
        "min_per_subscriber": min(counts),
        "load_average": {"start": load_start, "end": load_average()},
    }


def main(argv: list[str] | None = None) -> None:
    """Start the server, measure, print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--interval", default="50ms", help="tick interval of the server")
    parser.add_argument("--symbol", default="btcusd")
    parser.add_argument(
        "--futures", action="store_true", help="USD-M streams of BTC/USD-PERP instead of spot"
    )
    args = parser.parse_args(argv)
    symbols = ["BTC/USD", "BTC/USD-PERP"] if args.futures else ["BTC/USD", "ETH/USD"]
    streams = FUTURES_STREAMS if args.futures else SPOT_STREAMS
    with start_mdactors(symbols, args.interval) as server:
        assert server.pid is not None
        result = trio.run(
            measure,
            server.ports["ws"],
            server.pid,
            args.subscribers,
            args.seconds,
            args.symbol,
            streams,
        )
    result["tick_interval"] = args.interval
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
