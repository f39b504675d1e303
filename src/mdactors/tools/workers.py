"""``mdactors serve --workers N``: N service processes sharing the ports, one market.

Every worker is an ordinary ``mdactors serve`` with ``REUSE_PORT=true`` (the
kernel spreads new connections over the workers), and the market is
simulated once, so every connection sees the same market whichever worker
accepted it:

- with ``REDIS_URL``, ``CLUSTER_MODE=redis``: each symbol is simulated by
  exactly one worker and relayed to the others through Redis (history in
  Redis);
- without, worker 1 is the market process: it runs every actor and serves
  its ticks on a Unix socket (``FEED_PUBLISH``); the others run no actors
  and serve the ticks they read from it (``FEED_SUBSCRIBE``).

The parent forwards SIGTERM/SIGINT to the workers and exits with the worst
exit code once all have stopped; if one worker ends by itself (crashed, or
drained on its own signal), the others are stopped too and the exit code is
at least 1. Every worker gets the same ``SIM_SEED`` (a random one when none
is set), so their synthetic pasts agree.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
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
    zero = [name for name in ("http_port", "grpc_port", "ws_port") if getattr(settings, name) == 0]
    if zero:
        return f"--workers needs fixed ports (not 0): {', '.join(zero)}"
    return None


def run_workers(settings: Settings, workers: int, argv: Sequence[str]) -> int:
    """Start ``workers`` copies of ``mdactors <argv>`` and supervise them."""
    seed = settings.seed if settings.seed is not None else secrets.randbits(32)
    with tempfile.TemporaryDirectory(prefix="mdactors-feed-") as feed_dir:
        feed = os.path.join(feed_dir, "market.sock")
        children = []
        for index in range(1, workers + 1):
            env = {
                **os.environ,
                "REUSE_PORT": "true",
                "SERVICE_INSTANCE_NAME": f"{settings.instance_name}-w{index}"[:63].rstrip("-"),
                # One seed for all: the same synthetic past (backfill) on every worker.
                "SIM_SEED": str(seed),
            }
            if settings.redis_url:
                env["CLUSTER_MODE"] = "redis"
            else:
                env["FEED_PUBLISH" if index == 1 else "FEED_SUBSCRIBE"] = feed
            children.append(subprocess.Popen([sys.executable, "-m", "mdactors", *argv], env=env))
        return _supervise(children)


def _supervise(children: list[subprocess.Popen[bytes]]) -> int:
    """Forward SIGTERM/SIGINT to ``children``; stop all when one ends by itself (then
    the exit code is at least 1); the worst exit code."""
    stopping = unexpected = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while any(child.poll() is None for child in children):
            if not stopping and any(child.poll() is not None for child in children):
                unexpected = True
                forward(signal.SIGTERM, None)
            time.sleep(_POLL_S)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    worst = max(abs(child.returncode) for child in children)
    return max(worst, 1) if unexpected else worst
