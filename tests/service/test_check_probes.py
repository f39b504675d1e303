"""``mdactors check`` reaches each configured dependency and says why it cannot."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from tests.conftest import RedisServer


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdactors", "check", "--env-file", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", "REDIS_TIMEOUT": "1s", "REQUEST_TIMEOUT": "1s", **env},
    )


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def config_service(status: int) -> Iterator[str]:
    """A configuration service on loopback answering every GET with ``status``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "not found"}' if status == 404 else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_nothing_configured_probes_nothing() -> None:
    result = _check({})
    assert result.returncode == 0, result.stderr
    assert "reachable" not in result.stderr


def test_reachable_redis_and_config_service_exit_0(redis_server: RedisServer) -> None:
    with config_service(404) as url:  # 404: the key is not set, the service answers
        result = _check({"REDIS_URL": redis_server.url, "CONFIG_SERVICE_URL": url})
    assert result.returncode == 0, result.stderr
    assert f"redis 127.0.0.1:{redis_server.port}: reachable" in result.stderr
    assert "config_service 127.0.0.1:" in result.stderr and "unreachable" not in result.stderr
    assert not redis_server.client().keys("*"), "the probe's key is deleted"


def test_unreachable_redis_exits_1_with_the_reason() -> None:
    port = _closed_port()
    result = _check({"REDIS_URL": f"redis://127.0.0.1:{port}/0"})
    assert result.returncode == 1
    assert f"redis 127.0.0.1:{port}: unreachable (connection:" in result.stderr
    assert '"REDIS_URL": "***"' in result.stdout, "settings still printed, secrets masked"


def test_wrong_password_is_auth_and_never_printed(redis_server: RedisServer) -> None:
    redis_server.client().acl_setuser(
        "app", enabled=True, passwords=["+right"], keys=["*"], commands=["+@all"]
    )
    result = _check({"REDIS_URL": f"redis://app:s3cr3t-wrong@127.0.0.1:{redis_server.port}/0"})
    assert result.returncode == 1
    assert "unreachable (auth:" in result.stderr
    assert "s3cr3t-wrong" not in result.stderr + result.stdout


def test_acl_without_the_namespace_is_permission(redis_server: RedisServer) -> None:
    redis_server.client().acl_setuser(
        "reader", enabled=True, passwords=["+pw"], keys=["other:*"], commands=["+@all"]
    )
    result = _check({"REDIS_URL": f"redis://reader:pw@127.0.0.1:{redis_server.port}/0"})
    assert result.returncode == 1
    assert "unreachable (permission:" in result.stderr


@pytest.mark.parametrize(("status", "expected"), [(500, "HTTP 500"), (None, "ConnectError")])
def test_failing_config_service_exits_1(status: int | None, expected: str) -> None:
    if status is None:
        result = _check({"CONFIG_SERVICE_URL": f"http://127.0.0.1:{_closed_port()}"})
    else:
        with config_service(status) as url:
            result = _check({"CONFIG_SERVICE_URL": url})
    assert result.returncode == 1
    assert "config_service 127.0.0.1:" in result.stderr and expected in result.stderr


def test_bad_configuration_still_exits_2() -> None:
    assert _check({"REDIS_URL": "http://nope"}).returncode == 2


def test_reachable_postgres_exits_0(postgres_database: str) -> None:
    result = _check({"POSTGRES_URL": postgres_database})
    assert result.returncode == 0, result.stderr
    server = urlsplit(postgres_database)
    assert f"postgres {server.hostname}:{server.port}: reachable" in result.stderr


def test_unreachable_postgres_exits_1_with_the_reason_and_no_password() -> None:
    port = _closed_port()
    result = _check({"POSTGRES_URL": f"postgresql://app:s3cr3t@127.0.0.1:{port}/market"})
    assert result.returncode == 1
    assert f"postgres 127.0.0.1:{port}: unreachable (connection:" in result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def test_postgres_user_without_rights_is_permission(postgres_database: str) -> None:
    import psycopg

    user = f"reader_{_closed_port()}"
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f'CREATE ROLE "{user}" LOGIN')
        conn.execute(
            f'REVOKE CREATE ON DATABASE "{postgres_database.rsplit("/", 1)[1]}" FROM PUBLIC'
        )
        try:
            url = postgres_database.replace("postgres@", f"{user}@")
            result = _check({"POSTGRES_URL": url, "POSTGRES_SCHEMA": "nowhere"})
        finally:
            conn.execute(f'DROP ROLE "{user}"')
    assert result.returncode == 1
    assert f"unreachable (permission: user {user} may not write the database" in result.stderr
