"""Our WebSocket protocol on port 8765: listener, sessions, broadcast, JSON protocol."""
