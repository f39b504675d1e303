"""``mdactors serve --workers N``: N service processes sharing the ports, one market.

Every worker is an ordinary ``mdactors serve`` with ``REUSE_PORT=true`` (the
kernel spreads new connections over the workers) and ``CLUSTER_MODE=redis``:
each symbol is simulated by exactly one worker and relayed to the others
through Redis, so every connection sees the same market whichever worker
accepted it. The parent forwards SIGTERM/SIGINT to the workers and exits
with the worst exit code once all have stopped; if one worker dies, the
others are stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from types import FrameType

from mdactors.settings import Settings

__all__ = ["check_workers", "run_workers"]

_POLL_S = 0.2


def check_workers(settings: Settings, workers: int) -> str | None:
    """Why ``workers`` processes cannot serve with ``settings`` (``None`` if they can)."""
    if workers < 2:
        return None
    if not settings.redis_url:
        return "--workers needs REDIS_URL: the workers share one market through Redis"
    zero = [name for name in ("http_port", "grpc_port", "ws_port") if getattr(settings, name) == 0]
    if zero:
        return f"--workers needs fixed ports (not 0): {', '.join(zero)}"
    return None


def run_workers(settings: Settings, workers: int, argv: Sequence[str]) -> int:
    """Start ``workers`` copies of ``mdactors <argv>`` and supervise them."""
    children = []
    for index in range(1, workers + 1):
        env = {
            **os.environ,
            "REUSE_PORT": "true",
            "CLUSTER_MODE": "redis",
            "SERVICE_INSTANCE_NAME": f"{settings.instance_name}-w{index}"[:63].rstrip("-"),
        }
        children.append(subprocess.Popen([sys.executable, "-m", "mdactors", *argv], env=env))
    stopping = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(child.poll() is None for child in children):
            if not stopping and any(child.poll() not in (None, 0) for child in children):
                forward(signal.SIGTERM, None)
            time.sleep(_POLL_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return max(abs(child.returncode) for child in children)
