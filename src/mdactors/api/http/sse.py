"""Server-Sent Events framing (pure)."""

from __future__ import annotations

__all__ = ["sse_comment", "sse_event", "sse_retry"]


def sse_event(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One event. ``data`` must be a single line (compact JSON is)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: ".encode() + data + b"\n\n"


def sse_retry(milliseconds: int) -> bytes:
    """Tell the client how long to wait before reconnecting."""
    return f"retry: {milliseconds}\n\n".encode()


def sse_comment(text: str) -> bytes:
    """A comment line: keeps idle connections (and proxies) alive."""
    return f": {text}\n\n".encode()
