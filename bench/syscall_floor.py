"""The floor under any per-subscriber fan-out: CPU per small write to N loopback TCP sockets.

A server with one TCP connection per subscriber makes at least one
``write`` per subscriber per tick. This measures what that write alone costs
the writing process here — a tight Python loop of ``os.write`` of a
``--size``-byte message to each of ``--connections`` connections, ``--rate``
times a second, while a second process reads them all — so the server's CPU
per message can be compared with the part no server code can remove.

Usage: ``python bench/syscall_floor.py [--connections 1000] [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import selectors
import socket
import time
from multiprocessing.synchronize import Event


def _drain(port: int, connections: int, ready: Event) -> None:
    """Open ``connections`` connections to ``port`` and read them until they close."""
    sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    selector = selectors.DefaultSelector()
    for sock in sockets:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    ready.set()
    open_count = len(sockets)
    while open_count:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if not sock.recv(65_536):
                    selector.unregister(sock)
                    open_count -= 1
            except BlockingIOError:
                pass


def write_floor(connections: int, seconds: float, size: int, rate: float) -> float:
    """CPU microseconds of the writing process per ``size``-byte write."""
    with socket.create_server(("127.0.0.1", 0), backlog=connections) as server:
        ready = multiprocessing.Event()
        reader = multiprocessing.Process(
            target=_drain, args=(server.getsockname()[1], connections, ready), daemon=True
        )
        reader.start()
        accepted = [server.accept()[0] for _ in range(connections)]
    try:
        for sock in accepted:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ready.wait(30)
        message = b"x" * size
        descriptors = [sock.fileno() for sock in accepted]
        writes = 0
        cpu_started, started = time.process_time(), time.perf_counter()
        while time.perf_counter() - started < seconds:
            for descriptor in descriptors:
                os.write(descriptor, message)
            writes += len(descriptors)
            time.sleep(1.0 / rate)
        return (time.process_time() - cpu_started) / writes * 1e6
    finally:
        for sock in accepted:
            sock.close()
        reader.join(10)


def main(argv: list[str] | None = None) -> None:
    """Print the CPU per write for the given load."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--size", type=int, default=150, help="bytes per write")
    parser.add_argument("--rate", type=float, default=10.0, help="writes per connection per s")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.seconds <= 0 or args.size < 1 or args.rate <= 0:
        parser.error("--connections and --size must be >= 1, --seconds and --rate > 0")
    micros = write_floor(args.connections, args.seconds, args.size, args.rate)
    print(
        f"{args.connections} connections x {args.rate:g}/s, {args.size} B: "
        f"{micros:.1f} us CPU per write (writing process only)"
    )


if __name__ == "__main__":
    main()
