"""A WebSocket client that stops reading, end to end, through the stream outlet.

The outlet's one decision: a frame the client does not take within
``SLOW_CONSUMER_TIMEOUT`` ends the session (1008, or a reset when the frame
is half written), its slot is freed and the ticks it will never get are
counted ``disconnected``; latency was observed for what it did get.
"""

from __future__ import annotations

import json

import pytest
import trio
from trio_websocket import ConnectionClosed

from mdactors.app import Service
from tests.conftest import (
    MetricSamples,
    metric_samples,
    running_service,
    small_window_client,
    unwrap,
    wait_for,
)

pytestmark = pytest.mark.timeout(30)

SLOW_AFTER = 0.5
ENV = {
    "SLOW_CONSUMER_TIMEOUT": f"{SLOW_AFTER:g}s",
    "PRICE_UPDATE_INTERVAL": "5ms",
    "WS_SEND_BUFFER_BYTES": "4096",
}
#: The session must end this soon after the client stops reading: the time to fill
#: the kernel buffers with ~8 KB frames, the timeout, and slack for a loaded machine.
ENDED_WITHIN = SLOW_AFTER + 4.0


async def ws_samples(service: Service) -> MetricSamples:
    """The service's ``/metrics`` samples labelled ``client_type="ws"`` (or unlabelled)."""
    return {
        key: value
        for key, value in (await metric_samples(service)).items()
        if dict(key[1]).get("client_type", "ws") == "ws"
    }


async def test_a_client_that_stops_reading_is_closed_frees_its_slot_and_counts_its_losses() -> None:
    async with running_service(ENV) as service:
        streams = service.context.streams
        async with (
            trio.open_nursery() as nursery,
            small_window_client(service.ports["ws"], nursery) as ws,
        ):
            subscribe = {
                "type": "subscribe",
                "symbols": ["BTC"],
                "channels": ["ticker", "book:100"],
            }
            await ws.send_message(json.dumps(subscribe))
            updates = 0
            with trio.fail_after(5):
                while updates < 5:  # delivered, from the fast path or the writer
                    messages = list(unwrap(await ws.get_message()))
                    updates += sum(message["type"] == "update" for message in messages)
            assert streams.active == 1 and streams.by_type["ws"] == 1
            stopped = trio.current_time()
            await wait_for(lambda: streams.active == 0, within=ENDED_WITHIN)
            assert trio.current_time() - stopped >= SLOW_AFTER, "not before the timeout"
            assert streams.by_type["ws"] == 0
            with pytest.raises(ConnectionClosed) as closed, trio.fail_after(10):
                while True:  # what the kernel had taken, then the end
                    await ws.get_message()
            # Half written (the usual case): reset, 1006; none of it written: 1008 and why.
            reason = closed.value.reason
            assert reason.code in (1006, 1008)
            if reason.code == 1008:
                assert reason.reason.startswith("client too slow")
            nursery.cancel_scope.cancel()
        samples = await ws_samples(service)
        btc = (("client_type", "ws"), ("reason", "disconnected"), ("symbol", "BTC/USD"))
        assert samples[("market_data_dropped_updates_total", btc)] > 0
        assert (
            samples[("market_data_publication_latency_seconds_count", (("client_type", "ws"),))]
            >= 5
        )
        assert samples[("market_data_active_streams", ())] == 0
