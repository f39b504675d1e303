"""``mdactors check``'s reachability probes of the configured dependencies.

Each probe makes the smallest real call that proves the service could use the
dependency as it will at run time, and says why when it cannot:

- Redis: ``PING``, then a write, read and delete of one key under
  ``CACHE_NAMESPACE``, so a wrong password (``auth``) and an ACL that forbids
  the namespace (``permission``, Redis's ``NOPERM``) show as well as an
  unreachable server;
- the configuration service: one ``GET {url}/api/v1/configuration?key=...``;
  a 200 or a 404 (the key is not set) proves it answers, anything else is a
  failure with its status;
- PostgreSQL: a connection, then whether its user may use ``POSTGRES_SCHEMA``
  (``USAGE`` and ``CREATE`` on it when it exists, else ``CREATE`` on the
  database so the service can make it), so a missing privilege shows
  (``permission``) as well as a refused login (``auth``) or no server.

Targets are printed as ``host:port`` only: a URL's credentials never reach the
output. Probes are synchronous (the command runs before any event loop) and
bounded by ``REDIS_TIMEOUT``, ``REQUEST_TIMEOUT`` and ``POSTGRES_TIMEOUT``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import psycopg
import redis

from mdactors.adapters.config_service import PREFIX
from mdactors.adapters.postgres_store import failure_reason as postgres_failure
from mdactors.adapters.redis_history import failure_reason, redis_client
from mdactors.settings import Settings

__all__ = ["Probe", "probe_config_service", "probe_postgres", "probe_redis", "probes_for"]


@dataclass(frozen=True, slots=True)
class Probe:
    """One dependency's answer: ``reason`` says what failed (empty when reachable)."""

    name: str
    target: str
    reachable: bool
    reason: str = ""

    def line(self) -> str:
        """``redis 127.0.0.1:6379: reachable`` or ``...: unreachable (auth: ...)``."""
        state = "reachable" if self.reachable else f"unreachable ({self.reason})"
        return f"{self.name} {self.target}: {state}"


def _target(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    return f"{parts.hostname or '?'}:{parts.port or ''}".rstrip(":")


def probe_redis(url: str, namespace: str, timeout: float) -> Probe:
    """PING and a write/read/delete under ``namespace`` (see the module docstring)."""
    target = _target(url)
    client = redis_client(url, timeout)
    key = f"{namespace}check:{secrets.token_hex(6)}"
    try:
        client.ping()
        client.set(key, "1", ex=60)
        if client.get(key) != b"1":
            return Probe("redis", target, False, "response: the written key did not read back")
        client.delete(key)
    except redis.RedisError as error:
        return Probe("redis", target, False, f"{failure_reason(error)}: {error}")
    finally:
        client.close()
    return Probe("redis", target, True)


def probe_config_service(url: str, timeout: float) -> Probe:
    """One GET of the configuration API; 200 or 404 means it answers."""
    target = _target(url)
    try:
        response = httpx.get(
            f"{url.rstrip('/')}/api/v1/configuration",
            params={"key": f"{PREFIX}.tick-interval"},
            timeout=timeout,
        )
    except httpx.HTTPError as error:
        return Probe("config_service", target, False, f"{type(error).__name__}: {error}")
    if response.status_code not in (200, 404):
        return Probe("config_service", target, False, f"HTTP {response.status_code}")
    return Probe("config_service", target, True)


_SCHEMA_RIGHTS = """
SELECT current_user,
       (SELECT has_schema_privilege(nspname, 'USAGE') AND has_schema_privilege(nspname, 'CREATE')
          FROM pg_namespace WHERE nspname = %(schema)s),
       has_database_privilege(current_database(), 'CREATE')
"""


def probe_postgres(url: str, schema: str, timeout: float) -> Probe:
    """A connection and the user's rights on ``schema`` (see the module docstring)."""
    target = _target(url)
    try:
        with psycopg.connect(url, connect_timeout=max(1, round(timeout))) as conn:
            user, on_schema, on_database = conn.execute(
                _SCHEMA_RIGHTS, {"schema": schema}
            ).fetchone() or ("?", None, False)
    except psycopg.Error as error:
        # libpq names host, port, user and database in its messages, never the password.
        detail = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return Probe("postgres", target, False, f"{postgres_failure(error)}: {detail}")
    if on_schema is False or (on_schema is None and not on_database):
        where = f"schema {schema}" if on_schema is False else "the database (to create it)"
        return Probe("postgres", target, False, f"permission: user {user} may not write {where}")
    return Probe("postgres", target, True)


def probes_for(settings: Settings) -> list[Callable[[], Probe]]:
    """The probes of every dependency ``settings`` configures (none when all are empty)."""
    probes: list[Callable[[], Probe]] = []
    if settings.redis_url:
        probes.append(
            lambda: probe_redis(
                settings.redis_url, settings.cache_namespace, settings.redis_timeout
            )
        )
    if settings.config_service_url:
        probes.append(
            lambda: probe_config_service(settings.config_service_url, settings.request_timeout)
        )
    if settings.postgres_url:
        probes.append(
            lambda: probe_postgres(
                settings.postgres_url, settings.postgres_schema, settings.postgres_timeout
            )
        )
    return probes
