"""A tiny progress bar on a text stream (stderr), redrawn at most ten times a second."""

from __future__ import annotations

import time
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 30


class Progress:
    """Progress of ``total`` units: :meth:`update` with the count done, :meth:`close` at the end.

    Draws nothing when ``enabled`` is false (the caller's choice: short runs,
    stderr not a terminal, or ``--no-progress``).
    """

    def __init__(self, total: int, stream: TextIO, *, enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.enabled = enabled
        self._started = time.monotonic()
        self._drawn = 0.0

    def update(self, done: int) -> None:
        """Redraw for ``done`` units (throttled)."""
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= 0.1 or done >= self.total):
            self._drawn = now
            share = min(done / self.total, 1.0)
            filled = round(share * _WIDTH)
            bar = "#" * filled + "-" * (_WIDTH - filled)
            elapsed = now - self._started
            self.stream.write(f"\r[{bar}] {share:6.1%} {done}/{self.total} {elapsed:5.1f}s")
            self.stream.flush()

    def close(self) -> None:
        """Finish the line."""
        if self.enabled:
            self.update(self.total)
            self.stream.write("\n")
            self.stream.flush()
