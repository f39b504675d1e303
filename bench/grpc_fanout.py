"""gRPC fan-out: messages/s and server CPU µs per message for 1 and N subscribers.

Runs the service in a subprocess (``python -m mdactors serve``), opens N
StreamPrices subscribers on every symbol with grpc.aio (raw bytes, no
client-side parsing), and reads the server's CPU time from
``/proc/<pid>/stat``, minus what the market alone uses (measured first, with
no subscriber), so CPU per message is the cost of delivery. ``--compare``
runs each case twice: with encode-once (the default) and with every stream
serialising every tick itself.

    python bench/grpc_fanout.py                 # 1 and 200 subscribers, encode-once
    python bench/grpc_fanout.py --compare       # before/after encode-once
    python bench/grpc_fanout.py --seconds 1 --subscribers 1,20   # smoke

Linux only (``/proc``). Numbers depend on the machine; the client shares it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

import grpc

from mdactors._proto import marketdata_pb2 as pb

SYMBOLS = "BTC/USD,ETH/USD,ADA/USD,SOL/USD,DOT/USD,USDT/USD"
_SERVER = """
import sys
import mdactors.api.proto_codec as codec
codec.ENCODE_ONCE = {encode_once}
from mdactors.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Result:
    """One measured case."""

    subscribers: int
    encode_once: bool
    seconds: float
    messages: int
    messages_per_s: float
    server_cpu_s: float  # above the idle market's own CPU
    server_cpu_us_per_message: float


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(encode_once: bool, interval: str) -> tuple[subprocess.Popen[str], int]:
    env = {
        **os.environ,
        "HOST": "127.0.0.1",
        "HTTP_PORT": "0",
        "GRPC_PORT": "0",
        "WS_PORT": "0",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "DEFAULT_SYMBOLS": SYMBOLS,
        "PRICE_UPDATE_INTERVAL": interval,
        "MAX_SUBSCRIBERS": "100000",
        "DRAIN_DELAY": "0s",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER.format(encode_once=encode_once), "serve"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "listening" and entry.get("transport") == "grpc":
            return process, int(entry["binds"][0].rsplit(":", 1)[1])
    process.kill()
    raise SystemExit("the server did not report its gRPC port")


async def _subscribe(
    port: int, subscribers: int, seconds: float, pid: int
) -> tuple[int, float, float]:
    request = pb.StreamPricesRequest(symbols=SYMBOLS.split(",")).SerializeToString()
    received = 0
    counting = False
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(max(1, subscribers // 50))
    ]

    async def one(index: int) -> None:
        nonlocal received
        method = channels[index % len(channels)].unary_stream(
            "/marketdata.MarketDataService/StreamPrices",
            request_serializer=lambda raw: raw,
            response_deserializer=None,
        )
        async for _ in method(request):
            if counting:
                received += 1

    idle_before, idle_started = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(1.0)  # the market alone: ticks, candles, history
    idle_rate = (_cpu_seconds(pid) - idle_before) / (time.monotonic() - idle_started)
    tasks = [asyncio.create_task(one(index)) for index in range(subscribers)]
    await asyncio.sleep(1.0)  # everyone connected and past the snapshot
    counting = True
    cpu_before, started = _cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    counting = False
    cpu = _cpu_seconds(pid) - cpu_before
    elapsed = time.monotonic() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return received, max(0.0, cpu - idle_rate * elapsed), elapsed


def run_case(subscribers: int, encode_once: bool, seconds: float, interval: str) -> Result:
    """Start a server, measure one case, stop the server."""
    process, port = _start_server(encode_once, interval)
    try:
        messages, cpu, elapsed = asyncio.run(_subscribe(port, subscribers, seconds, process.pid))
    finally:
        process.terminate()
        process.wait(timeout=15)
    return Result(
        subscribers=subscribers,
        encode_once=encode_once,
        seconds=round(elapsed, 3),
        messages=messages,
        messages_per_s=round(messages / elapsed, 1),
        server_cpu_s=round(cpu, 3),
        server_cpu_us_per_message=round(cpu / messages * 1e6, 2) if messages else float("nan"),
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", default="1,200", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=4.0, help="measured time per case")
    parser.add_argument("--interval", default="20ms", help="tick interval per symbol")
    parser.add_argument("--compare", action="store_true", help="also run without encode-once")
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args(argv)
    modes = (False, True) if args.compare else (True,)
    for count in (int(part) for part in args.subscribers.split(",")):
        for encode_once in modes:
            result = run_case(count, encode_once, args.seconds, args.interval)
            if args.json:
                print(json.dumps(asdict(result)))
            else:
                print(
                    f"subscribers={result.subscribers:<4} encode_once={result.encode_once!s:<5} "
                    f"msgs/s={result.messages_per_s:>9.1f} "
                    f"server_cpu={result.server_cpu_s:.2f}s "
                    f"cpu/msg={result.server_cpu_us_per_message:.2f}µs"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
