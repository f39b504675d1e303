"""h2's settings keep working with the compact value queues."""

from __future__ import annotations

import sys

import h2.config
import h2.connection
import h2.settings

from mdactors.api.grpc.h2_settings import ValueQueue, compact_h2_settings


def test_settings_apply_only_when_acknowledged() -> None:
    compact_h2_settings()
    settings = h2.settings.Settings(client=False, initial_values={4: 1_000_000})
    assert isinstance(settings._settings[4], ValueQueue)
    settings.initial_window_size = 2_000_000
    settings.max_concurrent_streams = 100
    assert settings.initial_window_size == 1_000_000
    changed = settings.acknowledge()
    assert settings.initial_window_size == 2_000_000
    assert settings.max_concurrent_streams == 100
    assert changed[4].original_value == 1_000_000
    assert changed[4].new_value == 2_000_000


def test_two_h2_peers_still_agree_on_settings_and_exchange_data() -> None:
    compact_h2_settings()
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    for _ in range(3):
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
    assert server.remote_settings.initial_window_size == 1 << 20
    assert client.local_settings.initial_window_size == 1 << 20
    client.send_headers(1, [(":method", "GET"), (":path", "/"), (":scheme", "http"),
                            (":authority", "x")], end_stream=True)  # fmt: skip
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"x" * 16_000, end_stream=False)
    assert len(server.data_to_send()) > 16_000
    assert sys.getsizeof(server.local_settings._settings[4]) < 200
