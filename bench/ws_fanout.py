"""WebSocket fan-out: messages/s and server CPU per message for N subscribers.

Usage: ``python bench/ws_fanout.py [--subscribers 1 200] [--seconds 5] [--interval 50ms]
[--workers 4] [--compare]``.

The service runs in a subprocess (``mdactors serve`` on free loopback ports);
subscribers are trio-websocket clients spread over ``--workers`` processes,
each following the ``ticker`` channel of every default symbol. For each N the
script measures, over a window after a warm-up: ticker updates received per
second (all clients), the server's CPU time from ``/proc/<pid>/stat``
(user + system) per message delivered, raw and net of the idle service's CPU
(ticks, candles, history), plus the drops and the mean publish→hand-off
latency the server reports on ``/metrics``. ``--compare`` also runs a server
whose ticker message is re-encoded for every subscriber (encode-once off).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack

SYMBOLS = "BTC/USD,ETH/USD,ADA/USD,SOL/USD,DOT/USD,USDT/USD"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Runs the service with the ticker message built per send instead of once per tick.
_UNCACHED_SERVER = """
import sys
import mdactors.api.ws as ws
import mdactors.api.ws_protocol as protocol

def ticker_update(tick):
    return protocol._data(
        "update", "ticker", tick.symbol, tick.seq, tick.ts_ns, protocol._ticker_data(tick)
    )

ws.ticker_update = ticker_update
from mdactors.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _metric_sum(text: str, name: str, client_type: str = "ws") -> float:
    pattern = re.compile(rf'^{name}\{{[^}}]*client_type="{client_type}"[^}}]*\}} (\S+)$', re.M)
    return sum(float(value) for value in pattern.findall(text))


def _start_server(interval: str, encode_once: bool) -> tuple[subprocess.Popen[bytes], int, int]:
    ws_port, http_port, grpc_port = _free_port(), _free_port(), _free_port()
    args = ["serve", "--host", "127.0.0.1", "--ws-port", str(ws_port)]
    args += ["--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    args += ["--interval", interval, "--log-level", "WARNING", "--seed", "7"]
    command = [sys.executable, "-m", "mdactors", *args]
    if not encode_once:
        command = [sys.executable, "-c", _UNCACHED_SERVER, *args]
    env = {**os.environ, "DEFAULT_SYMBOLS": SYMBOLS, "MAX_SUBSCRIBERS": "100000"}
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", ws_port), timeout=0.2).close()
            return server, ws_port, http_port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the service did not start") from None
            time.sleep(0.1)


def _worker(port: int, clients: int, warmup: float, seconds: float, out: multiprocessing.Queue):
    """One client process: ``clients`` subscribers; puts its update count in the window."""
    import trio
    from trio_websocket import open_websocket_url

    async def run() -> int:
        counts = [0]
        counting = [False]
        subscribed = trio.Event()
        ready = [0]

        async def client() -> None:
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws") as ws:
                await ws.send_message(
                    json.dumps({"type": "subscribe", "symbols": SYMBOLS.split(",")})
                )
                ready[0] += 1
                if ready[0] == clients:
                    subscribed.set()
                while True:
                    frame = await ws.get_message()
                    if counting[0]:
                        counts[0] += frame.count('"type":"update"')

        async with trio.open_nursery() as nursery:
            for _ in range(clients):
                nursery.start_soon(client)
            await subscribed.wait()
            await trio.sleep(warmup)
            counting[0] = True
            await trio.sleep(seconds)
            counting[0] = False
            nursery.cancel_scope.cancel()
        return counts[0]

    out.put(trio.run(run))


def measure(
    port: int, pid: int, http_port: int, subscribers: int, workers: int, seconds: float
) -> dict[str, float]:
    """Run ``subscribers`` clients and measure the server over ``seconds``."""
    warmup = 2.0
    workers = max(1, min(workers, subscribers))
    queue: multiprocessing.Queue = multiprocessing.Queue()
    shares = [subscribers // workers + (i < subscribers % workers) for i in range(workers)]
    procs = [
        multiprocessing.Process(target=_worker, args=(port, n, warmup, seconds, queue))
        for n in shares
    ]
    for proc in procs:
        proc.start()
    # The workers start counting ``warmup`` after their clients subscribed; sample
    # the server's CPU over the same window (connection set-up is excluded).
    time.sleep(warmup + 1.0)
    cpu_start, started = _cpu_seconds(pid), time.monotonic()
    time.sleep(seconds - 1.0)
    cpu, elapsed = _cpu_seconds(pid) - cpu_start, time.monotonic() - started
    messages = sum(queue.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(timeout=10)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics").read().decode()
    latency_sum = _metric_sum(metrics, "market_data_publication_latency_seconds_sum")
    latency_count = _metric_sum(metrics, "market_data_publication_latency_seconds_count")
    rate = messages / seconds
    return {
        "subscribers": subscribers,
        "messages_per_s": rate,
        "server_cpu_pct": 100 * cpu / elapsed,
        "cpu_us_per_message": 1e6 * cpu / elapsed / rate if rate else float("nan"),
        "dropped_total": _metric_sum(metrics, "market_data_dropped_updates_total"),
        "mean_latency_ms": 1e3 * latency_sum / latency_count if latency_count else float("nan"),
    }


def run_server(args: argparse.Namespace, encode_once: bool) -> list[dict[str, float]]:
    """Measure every subscriber count against one fresh server."""
    with ExitStack() as stack:
        server, port, http_port = _start_server(args.interval, encode_once)
        stack.callback(server.wait, 10)
        stack.callback(server.terminate)
        time.sleep(1.0)
        idle_start = _cpu_seconds(server.pid)
        time.sleep(args.seconds)
        idle = (_cpu_seconds(server.pid) - idle_start) / args.seconds
        rows = []
        for count in args.subscribers:
            row = measure(port, server.pid, http_port, count, args.workers, args.seconds)
            net = row["server_cpu_pct"] / 100 - idle
            row["net_cpu_us_per_message"] = 1e6 * net / row["messages_per_s"]
            row["idle_cpu_pct"] = 100 * idle
            rows.append(row)
        return rows


def main() -> None:
    """Parse flags, run, print a table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 200])
    parser.add_argument("--seconds", type=float, default=5.0, help="measurement window")
    parser.add_argument("--interval", default="50ms", help="tick interval per symbol")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--compare", action="store_true", help="also run with encode-once off")
    parser.add_argument("--json", action="store_true", help="print JSON rows too")
    args = parser.parse_args()
    modes = [("encode-once", True)] + ([("per-send encode", False)] if args.compare else [])
    print(
        f"{'mode':<16} {'subs':>5} {'msgs/s':>9} {'cpu %':>6} {'µs/msg':>7} "
        f"{'net µs/msg':>10} {'drops':>6} {'lat ms':>7}"
    )
    results = []
    for name, encode_once in modes:
        for row in run_server(args, encode_once):
            row["mode"] = name
            results.append(row)
            print(
                f"{name:<16} {row['subscribers']:>5} {row['messages_per_s']:>9.0f} "
                f"{row['server_cpu_pct']:>6.1f} {row['cpu_us_per_message']:>7.1f} "
                f"{row['net_cpu_us_per_message']:>10.1f} {row['dropped_total']:>6.0f} "
                f"{row['mean_latency_ms']:>7.2f}"
            )
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
