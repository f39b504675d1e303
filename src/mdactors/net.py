"""Listening sockets that several processes can share (``mdactors serve --workers``)."""

from __future__ import annotations

import socket

__all__ = ["shared_listen_socket"]


def shared_listen_socket(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A non-blocking TCP socket listening on ``host:port`` with ``SO_REUSEPORT``:
    the kernel spreads new connections over every process bound the same way."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host or "0.0.0.0", port))
        sock.listen(backlog)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
