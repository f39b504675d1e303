"""The servers under test: mdactors and the baselines as subprocesses, or a running server.

Every server the harness starts logs JSON lines on stderr with an event
``listening`` per transport (``port`` or ``binds``); mdactors also logs
``serving`` once all transports are up. A thread keeps draining stderr so a
chatty server never blocks on a full pipe; its last lines are kept for
error messages.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BASELINES", "Server", "running_server", "start_baseline", "start_mdactors"]

BENCH_DIR = Path(__file__).resolve().parent
#: transport → the baseline module serving it the same way, in ``bench/baselines/``.
BASELINES = {"grpc": "bench.baselines.grpc_server", "ws": "bench.baselines.ws_server"}
_START_TIMEOUT_S = 60.0


@dataclass
class Server:
    """A server to measure: where each transport listens and, if local, its pid."""

    name: str
    host: str
    ports: dict[str, int]
    pid: int | None = None
    process: subprocess.Popen[str] | None = field(default=None, repr=False)
    log_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20), repr=False)

    def stop(self) -> None:
        """Terminate the server if the harness started it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def running_server(address: str, transport: str, pid: int | None) -> Server:
    """A server the harness did not start: ``host:port`` of ``transport`` (its pid if local)."""
    host, _, port = address.rpartition(":")
    return Server("mdactors", host or "127.0.0.1", {transport: int(port)}, pid)


def _port(entry: dict[str, object]) -> int:
    if "port" in entry:
        return int(entry["port"])  # type: ignore[arg-type]
    binds = entry["binds"]
    return int(str(binds[0]).rsplit(":", 1)[1])  # type: ignore[index]


def _launch(name: str, command: list[str], wanted: set[str], env: dict[str, str]) -> Server:
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
        cwd=BENCH_DIR.parent,
    )
    server = Server(name, "127.0.0.1", {}, process.pid, process)
    ready = threading.Event()

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            server.log_tail.append(line.rstrip())
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict):
                continue
            if entry.get("event") == "listening" and entry.get("transport") in wanted:
                server.ports[str(entry["transport"])] = _port(entry)
            if set(server.ports) >= wanted and entry.get("event") in ("serving", "listening"):
                ready.set()
        ready.set()

    threading.Thread(target=drain, name=f"{name}-stderr", daemon=True).start()
    deadline = time.monotonic() + _START_TIMEOUT_S
    while not ready.wait(0.1):
        if time.monotonic() > deadline:
            break
    if not set(server.ports) >= wanted or process.poll() is not None:
        server.stop()
        tail = "\n".join(server.log_tail)
        raise RuntimeError(f"{name} did not start (wanted {sorted(wanted)}):\n{tail}")
    return server


def start_mdactors(
    symbols: list[str], interval: str, seed: int = 7, env: dict[str, str] | None = None
) -> Server:
    """``mdactors serve`` on free loopback ports (every transport), in-memory history
    unless ``env`` (extra environment variables) says otherwise."""
    command = [sys.executable, "-m", "mdactors", "serve", "--host", "127.0.0.1"]
    command += ["--http-port", "0", "--grpc-port", "0", "--ws-port", "0"]
    command += ["--symbols", ",".join(symbols), "--interval", interval, "--seed", str(seed)]
    command += ["--log-format", "json", "--log-level", "INFO", "--env-file", os.devnull]
    env = {"MAX_SUBSCRIBERS": "1000000", "DRAIN_DELAY": "0s", "REDIS_URL": "", **(env or {})}
    server = _launch("mdactors", command, {"grpc", "http", "ws"}, env)
    for transport in ("sse", "connect", "grpc-web", "grpc-http"):
        server.ports[transport] = server.ports["http"]
    return server


def start_baseline(transport: str, symbols: list[str], interval: str) -> Server:
    """The baseline server of ``transport`` (see :data:`BASELINES`)."""
    command = [sys.executable, "-m", BASELINES[transport], "--port", "0"]
    command += ["--symbols", ",".join(symbols), "--interval", interval]
    return _launch("baseline", command, {transport}, {})
