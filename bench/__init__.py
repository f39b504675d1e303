"""The tick-latency benchmark harness (``python -m bench`` or ``mdactors bench``).

Starts the service (or targets a running one), drives N subscribers over
gRPC, WebSocket or SSE from worker processes, and measures publish→receive
latency, delivered messages/s, drops and gaps, server CPU per message, RSS
and connect time — against a minimal baseline server under the same load.
See ``python -m bench --help`` and docs/performance.md.
"""
