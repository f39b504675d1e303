"""Service settings: environment, an optional ``.env`` file, then CLI flags.

Precedence, highest first: CLI flags, the process environment, the ``.env``
file, the defaults below. Every variable is validated when the settings are
loaded; a bad value raises :class:`ConfigError` naming the variable, which the
CLI turns into one line on stderr and exit code 2.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdactors.domain.candles import INTERVALS
from mdactors.domain.model_config import parse_model_config
from mdactors.domain.symbols import SymbolError, is_perpetual, normalize_symbol, spot_of

__all__ = [
    "DISCOVERY_SCHEMES",
    "ECOSYSTEM_UNUSED",
    "FIELDS",
    "ConfigError",
    "Settings",
    "load_settings",
    "parse_duration",
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class ConfigError(ValueError):
    """A configuration value is invalid; ``variable`` names the setting at fault."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


def parse_duration(text: str) -> float:
    """Parse a Go duration (``300ms``, ``5s``, ``1h30m``, ``1.5s``) into seconds.

    A bare ``0`` is accepted, as Go does. Negative durations are rejected: no
    setting of this service means anything with one.
    """
    text = text.strip()
    if text == "0":
        return 0.0
    if not text or text.startswith("-"):
        raise ValueError(f"invalid duration {text!r} (expected e.g. 300ms, 5s, 1h30m)")
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError(f"invalid duration {text!r} (expected e.g. 300ms, 5s, 1h30m)")
    return total


def _positive_duration(text: str) -> float:
    value = parse_duration(text)
    if value <= 0:
        raise ValueError(f"duration must be greater than zero, got {text!r}")
    return value


def _candle_interval(text: str) -> float:
    """A candle interval by name (``1m`` … ``1d``) or as the Go duration of one (``24h``)."""
    text = text.strip()
    if text in INTERVALS:
        return float(INTERVALS[text])
    names = ", ".join(INTERVALS)
    try:
        value = parse_duration(text)
    except ValueError:
        raise ValueError(
            f"must be one of {names} (or a Go duration of one); got {text!r}"
        ) from None
    if value not in INTERVALS.values():
        raise ValueError(f"must be one of {names} (or a Go duration of one); got {text!r}")
    return value


def _deviation_percent(text: str) -> float:
    """A largest price move, in percent: ``25%`` and ``25`` are percent, ``0.25`` a fraction.

    A bare number below 1 is read as a fraction (the old service's README
    writes ``MAX_PRICE_DEVIATION=0.25`` for 25 %); 1 or more is percent; a
    trailing ``%`` is always percent (so ``0.5%`` is half a percent).
    """
    stripped = text.strip()
    if stripped.endswith("%"):
        value = float(stripped[:-1])
    else:
        value = float(stripped)
        if 0 < value < 1:
            value *= 100.0
    if not 0.01 <= value <= 99:
        raise ValueError(f"must be within 0.01%..99% (e.g. 25, 25% or 0.25), got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"port must be within 0..65535, got {value}")
    return value


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"must be within {low}..{high}, got {value}")
        return value

    return parse


def _float_range(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise ValueError(f"must be within {low:g}..{high:g}, got {text!r}")
        return value

    return parse


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in options:
            raise ValueError(f"expected one of {', '.join(options)}, got {text!r}")
        return lowered

    return parse


def _log_level(text: str) -> str:
    upper = text.strip().upper()
    if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ValueError(f"expected DEBUG, INFO, WARNING, ERROR or CRITICAL, got {text!r}")
    return upper


def _instance_name(text: str) -> str:
    # The old service only warned about upper case; load_settings says it lowered it.
    text = text.strip().lower()
    if not text:
        return ""
    if len(text) > 63 or not _DNS_LABEL.match(text):
        raise ValueError(
            f"{text!r} is not DNS-safe (lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters)"
        )
    return text


def _service_name(text: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError("must not be empty")
    if name != _instance_name(name):
        raise ValueError(f"{name!r} is not DNS-safe (it names keys other services look up)")
    return name


def _namespace(text: str) -> str:
    """A Redis key prefix ending in ``:`` (``market_data`` and ``market_data:`` are the same)."""
    text = text.strip()
    return text if not text or text.endswith(":") else f"{text}:"


def _key_segment(text: str) -> str:
    """A non-empty Redis key segment without ``:``, ``*`` or spaces (a discovery namespace)."""
    text = text.strip().rstrip(":")
    if not text or any(char in text for char in ":*?[] \t"):
        raise ValueError(f"expected a key segment such as market_data, got {text!r}")
    return text


DISCOVERY_SCHEMES = ("services", "registry", "adapter")
"""Discovery records that can be written: the Go services' JSON records, the
Python services' hash, the data adapter's namespaced keys (docs/redis.md)."""


def _schemes(text: str) -> tuple[str, ...]:
    chosen: list[str] = []
    for raw in text.split(","):
        name = raw.strip().lower()
        if not name:
            continue
        if name not in DISCOVERY_SCHEMES:
            raise ValueError(
                f"unknown scheme {name!r}; expected some of {', '.join(DISCOVERY_SCHEMES)}"
            )
        if name not in chosen:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"name at least one of {', '.join(DISCOVERY_SCHEMES)}")
    return tuple(chosen)


def _symbols(text: str) -> tuple[str, ...]:
    keys: list[str] = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        try:
            key = normalize_symbol(raw)
        except SymbolError as error:
            raise ValueError(str(error)) from None
        if key not in keys:
            keys.append(key)
    if not keys:
        raise ValueError("at least one symbol is required")
    for key in keys:
        if is_perpetual(key) and spot_of(key) not in keys:
            raise ValueError(f"{key} is simulated on its spot: add {spot_of(key)} too")
    return tuple(keys)


def _binance_aliases(text: str) -> tuple[str, ...]:
    """``KEY=BASE/QUOTE`` pairs (comma-separated), each normalised (``BTC/USD=BTC/USDT``)."""
    aliases: list[str] = []
    for entry in text.split(","):
        if not entry.strip():
            continue
        key_text, sep, alias_text = entry.partition("=")
        try:
            if not sep or "/" not in alias_text:
                raise SymbolError("expected KEY=BASE/QUOTE")
            key = normalize_symbol(key_text)
            base, quote = normalize_symbol(alias_text).split("/")
        except SymbolError as error:
            raise ValueError(
                f"bad alias {entry.strip()[:60]!r}: {error} (e.g. BTC/USD=BTC/USDT)"
            ) from None
        aliases.append(f"{key}={base}/{quote}")
    return tuple(aliases)


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        text = text.strip()
        if not text:
            return ""
        if not any(text.startswith(f"{scheme}://") for scheme in schemes):
            raise ValueError(f"expected a {' or '.join(schemes)} URL")
        return text

    return parse


def _text(text: str) -> str:
    return text.strip()


def _postgres_url(text: str) -> str:
    """A ``postgresql://`` (or ``postgres://``) URL that libpq can parse; empty = off."""
    text = text.strip()
    if not text:
        return ""
    if not text.startswith(("postgresql://", "postgres://")):
        raise ValueError("expected a postgresql:// URL (e.g. postgresql://user@host:5432/db)")
    from psycopg.conninfo import conninfo_to_dict  # only when PostgreSQL is configured

    try:
        params = conninfo_to_dict(text)
    except Exception as error:  # psycopg.ProgrammingError: libpq's own message
        # libpq quotes the URL (password included) in some messages: never echo it.
        reason = str(error).replace(text, "<url>").splitlines()[0][:120]
        raise ValueError(f"not a valid PostgreSQL URL ({reason})") from None
    for port in str(params.get("port", "5432")).split(","):
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"not a valid PostgreSQL URL (port {port[:20]!r})")
    if params.get("sslmode", "prefer") not in _SSL_MODES:
        raise ValueError(
            f"not a valid PostgreSQL URL (sslmode must be one of {', '.join(_SSL_MODES)})"
        )
    return text


_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


_SQL_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _sql_identifier(text: str) -> str:
    """A lower-case SQL identifier (a schema name), so it never needs quoting to match."""
    text = text.strip()
    if not _SQL_IDENTIFIER.match(text):
        raise ValueError(
            f"expected a lower-case identifier such as market_data (letters, digits, '_', "
            f"at most 63 characters), got {text[:70]!r}"
        )
    return text


def _socket_path(text: str) -> str:
    """A Unix socket path (empty = none): absolute, and short enough for ``bind``."""
    text = text.strip()
    if text and not text.startswith("/"):
        raise ValueError("expected an absolute path")
    if len(text.encode()) >= 108:  # sun_path holds 108 bytes, the final NUL included
        raise ValueError("too long for a Unix socket path (at most 107 bytes)")
    return text


def _seed(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    value = int(text)
    if value < 0:
        raise ValueError(f"seed must be non-negative, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class Field:
    """One setting: its attribute, environment variable, parser and default.

    ``aliases`` are other variables that set it when ``env`` is not given,
    each with a function turning its value into ``env``'s syntax (older
    names of ours, and the ecosystem's names for the same thing).
    """

    attr: str
    env: str
    parse: Callable[[str], Any]
    default: str
    help: str
    secret: bool = False
    aliases: tuple[tuple[str, Callable[[str], str]], ...] = ()


def _same(text: str) -> str:
    return text


def _hash_scheme_flag(text: str) -> str:
    return "services,registry" if _boolean(text) else "services"


def _milliseconds(text: str) -> str:
    return f"{int(text.strip())}ms"


FIELDS: tuple[Field, ...] = (
    Field("service_name", "SERVICE_NAME", _service_name, "market-data-simulator",
          "Service name used in discovery keys and metrics."),
    Field("instance_name", "SERVICE_INSTANCE_NAME", _instance_name, "",
          "DNS-safe instance name; defaults to the service name."),
    Field("service_version", "SERVICE_VERSION", _text, "0.1.0", "Version reported by health."),
    Field("environment", "ENVIRONMENT", _text, "development", "Deployment environment name."),
    Field("host", "HOST", _text, "0.0.0.0", "Bind address for every listener."),
    Field("http_port", "HTTP_PORT", _port, "8080", "REST, SSE, Connect and /metrics."),
    Field("grpc_port", "GRPC_PORT", _port, "50051", "gRPC (MarketDataService, health)."),
    Field("ws_port", "WS_PORT", _port, "8765", "WebSocket streaming."),
    Field("redis_url", "REDIS_URL", _url("redis", "rediss", "unix"), "",
          "Redis for history and discovery; empty = in-memory only.", secret=True),
    Field("config_service_url", "CONFIG_SERVICE_URL", _url("http", "https"), "",
          "Configuration service base URL; empty = none."),
    Field("request_timeout", "REQUEST_TIMEOUT", _positive_duration, "30s",
          "Timeout for outgoing requests and for one REST request."),
    Field("cache_ttl", "CACHE_TTL", _positive_duration, "5m", "Config cache TTL."),
    Field("health_check_interval", "HEALTH_CHECK_INTERVAL", _positive_duration, "30s",
          "Interval of the dependency checks whose status changes are logged."),
    Field("log_level", "LOG_LEVEL", _log_level, "INFO", "Log level."),
    Field("log_format", "LOG_FORMAT", _choice("json", "text"), "json", "json or text."),
    Field("symbols", "DEFAULT_SYMBOLS", _symbols,
          "BTC/USD,ETH/USD,ADA/USD,SOL/USD,DOT/USD,USDT/USD,BTC/ETH,BTC/USD-PERP",
          "Symbols simulated; crosses of simulated legs (BTC/ETH) are priced from them, "
          "perpetuals (BTC/USD-PERP) from their spot, which must be simulated too."),
    Field("tick_interval", "PRICE_UPDATE_INTERVAL", _positive_duration, "1s",
          "Interval between ticks of each symbol (or TICK_FREQUENCY_MS, in milliseconds).",
          aliases=(("TICK_FREQUENCY_MS", _milliseconds),)),
    Field("candle_interval", "CANDLE_INTERVAL", _candle_interval, "1m",
          "Default candle interval of history queries."),
    Field("seed", "SIM_SEED", _seed, "", "Seed for a reproducible run; empty = random."),
    Field("model_config", "MODEL_CONFIG", parse_model_config, "",
          "Per-symbol price models as JSON, e.g. {\"BTC/USD\": {\"model\": \"gbm\"}}; "
          "see mdactors.domain.model_config. Empty = calibrated defaults."),
    Field("admin_token", "ADMIN_TOKEN", _text, "",
          "Bearer token for the chaos and debug APIs; empty = open.", secret=True),
    Field("chaos_enabled", "CHAOS_ENABLED", _boolean, "true", "Enable the chaos API."),
    Field("max_price_deviation", "MAX_PRICE_DEVIATION", _deviation_percent, "50",
          "Largest price move one chaos scenario may ask for: 25 or 25% = 25 %; a bare "
          "number below 1 is a fraction (0.25 = 25 %)."),
    Field("scenario_timeout_hours", "SCENARIO_TIMEOUT_HOURS", _float_range(0.001, 720), "48",
          "Longest duration (and recovery) of one chaos scenario, in hours."),
    Field("price_breaker_threshold", "PRICE_BREAKER_THRESHOLD", _float_range(0, 99), "20",
          "Price move (percent) within PRICE_BREAKER_WINDOW that halts a symbol; 0 = off."),
    Field("price_breaker_window", "PRICE_BREAKER_WINDOW", _positive_duration, "1m",
          "Window of the price circuit breaker."),
    Field("price_breaker_timeout", "PRICE_BREAKER_TIMEOUT", _positive_duration, "5m",
          "How long a tripped price breaker halts its symbol unless reset."),
    Field("cache_namespace", "CACHE_NAMESPACE", _namespace, "market_data:",
          "Redis key prefix; a missing trailing ':' is added (market_data = market_data:)."),
    Field("redis_timeout", "REDIS_TIMEOUT", _positive_duration, "2s",
          "Connect and command timeout of each Redis call (made off the event loop)."),
    Field("history_backlog", "HISTORY_BACKLOG", _int_range(1, 10_000_000), "100000",
          "Ticks (and, apart, candles) buffered for Redis while it is slow or down; "
          "beyond it the oldest are dropped and counted."),
    Field("history_batch_size", "HISTORY_BATCH_SIZE", _int_range(1, 100_000), "100",
          "Ticks that trigger a Redis flush at once; one flush writes up to 10x this."),
    Field("history_flush_interval", "HISTORY_FLUSH_INTERVAL", _positive_duration, "5ms",
          "Longest a tick waits before a Redis flush when fewer than a batch are pending."),
    Field("redis_breaker_threshold", "REDIS_BREAKER_THRESHOLD", _int_range(1, 1_000), "5",
          "Consecutive Redis failures that open its circuit breaker."),
    Field("redis_breaker_timeout", "REDIS_BREAKER_TIMEOUT", _positive_duration, "30s",
          "How long an open Redis breaker waits before a trial call; caps the retry backoff."),
    Field("postgres_url", "POSTGRES_URL", _postgres_url, "",
          "PostgreSQL for long history, snapshots and the symbol catalogue "
          "(postgresql://user:password@host:5432/db); empty = off.", secret=True),
    Field("postgres_schema", "POSTGRES_SCHEMA", _sql_identifier, "market_data",
          "Schema of the market-data tables (created if missing)."),
    Field("postgres_pool_size", "POSTGRES_POOL_SIZE", _int_range(1, 100), "4",
          "Most PostgreSQL connections held by this process."),
    Field("postgres_timeout", "POSTGRES_TIMEOUT", _positive_duration, "5s",
          "Connect timeout and statement timeout of each PostgreSQL call (made off the loop)."),
    Field("postgres_backlog", "POSTGRES_BACKLOG", _int_range(1, 10_000_000), "100000",
          "Rows per table buffered for PostgreSQL while it is slow or down; beyond it the "
          "oldest are dropped and counted."),
    Field("postgres_breaker_timeout", "POSTGRES_BREAKER_TIMEOUT", _positive_duration, "30s",
          "How long an open PostgreSQL breaker waits before a trial call; caps the backoff."),
    Field("price_feed_sample_interval", "PRICE_FEED_SAMPLE_INTERVAL", parse_duration, "1s",
          "A price_feeds row per symbol at most this often; 0 = every tick."),
    Field("snapshot_interval", "SNAPSHOT_INTERVAL", _positive_duration, "1m",
          "A market_snapshots row per symbol this often."),
    Field("advertise_address", "ADVERTISE_ADDRESS", _text, "",
          "Routable address registered in discovery; defaults to the host name."),
    Field("max_subscribers", "MAX_SUBSCRIBERS", _int_range(1, 1_000_000), "10000",
          "Concurrent streams per process, all transports."),
    Field("max_stream_symbols", "MAX_STREAM_SYMBOLS", _int_range(1, 100_000), "100",
          "Most symbols one stream may follow (gRPC, Connect, WebSocket session)."),
    Field("slow_consumer_timeout", "SLOW_CONSUMER_TIMEOUT", _positive_duration, "10s",
          "A stream whose client accepts no update for this long is closed "
          "(SSE and Connect streams: the connection is reset)."),
    Field("stream_interval_floor", "STREAM_INTERVAL_FLOOR", parse_duration, "0",
          "Smallest update interval a stream gets; 0 = every tick allowed."),
    Field("max_request_bytes", "MAX_REQUEST_BYTES", _int_range(64, 4 * 1024 * 1024), "65536",
          "Largest client message accepted (gRPC, Connect, WebSocket), in bytes; "
          "WebSocket messages over 4x this close the connection (1009)."),
    Field("max_history_limit", "MAX_HISTORY_LIMIT", _int_range(1, 1_000_000), "5000",
          "Largest `limit` a history query may ask for."),
    Field("backfill_days", "BACKFILL_DAYS", _int_range(1, 90), "30",
          "Days of one-minute history made at start-up (from 00:00 UTC that many days "
          "before today), served by every history, candles and klines query."),
    Field("history_size", "HISTORY_SIZE", _int_range(16, 10_000_000), "86400",
          "Ticks kept per symbol by the in-memory history."),
    Field("shutdown_timeout", "SHUTDOWN_TIMEOUT", _positive_duration, "10s",
          "Drain deadline on SIGTERM/SIGINT."),
    Field("drain_delay", "DRAIN_DELAY", parse_duration, "1s",
          "On SIGTERM, time between readiness turning 503 and listeners closing."),
    Field("sse_retry", "SSE_RETRY", _positive_duration, "3s",
          "Reconnect delay suggested to SSE clients."),
    Field("reuse_port", "REUSE_PORT", _boolean, "false",
          "Bind every listener with SO_REUSEPORT so processes share the ports "
          "(set by serve --workers)."),
    Field("discovery_enabled", "DISCOVERY_ENABLED", _boolean, "true",
          "Register this instance in Redis service discovery (when REDIS_URL is set)."),
    Field("heartbeat_interval", "HEARTBEAT_INTERVAL", _positive_duration, "15s",
          "Discovery heartbeat interval."),
    Field("service_ttl", "SERVICE_TTL", _positive_duration, "30s",
          "TTL of the discovery records; must exceed HEARTBEAT_INTERVAL (also DISCOVERY_TTL).",
          aliases=(("DISCOVERY_TTL", _same),)),
    Field("discovery_schemes", "DISCOVERY_SCHEMES", _schemes, "services",
          "Discovery records written, some of services (services:{name}:{id} JSON, the Go "
          "clients'), registry (registry:services:{name} hash, the Python services'), adapter "
          "({SERVICE_DISCOVERY_NAMESPACE}:service:{id}); DISCOVERY_HASH_SCHEME=true is "
          "services,registry.",
          aliases=(("DISCOVERY_HASH_SCHEME", _hash_scheme_flag),)),
    Field("discovery_namespace", "SERVICE_DISCOVERY_NAMESPACE", _key_segment, "market_data",
          "Key prefix of the adapter discovery scheme."),
    Field("cluster_mode", "CLUSTER_MODE", _choice("off", "redis"), "off",
          "redis = share the symbols with other instances through Redis leases (needs "
          "REDIS_URL); off = this instance simulates every symbol."),
    Field("feed_publish", "FEED_PUBLISH", _socket_path, "",
          "Unix socket path on which this process serves every tick to workers "
          "(set by serve --workers without Redis)."),
    Field("feed_subscribe", "FEED_SUBSCRIBE", _socket_path, "",
          "Unix socket path of the market process: run no actors, serve its ticks "
          "(set by serve --workers without Redis)."),
    Field("cluster_lease_ttl", "CLUSTER_LEASE_TTL", _positive_duration, "3s",
          "TTL of a symbol's lease: a dead owner's symbols are taken over within about "
          "this plus CLUSTER_RENEW_INTERVAL."),
    Field("cluster_renew_interval", "CLUSTER_RENEW_INTERVAL", _positive_duration, "1s",
          "How often leases are renewed and free symbols claimed; at most CLUSTER_LEASE_TTL/3."),
    Field("ws_heartbeat_interval", "WS_HEARTBEAT_INTERVAL", _positive_duration, "15s",
          "An idle WebSocket session gets a heartbeat message after this long."),
    Field("ws_send_buffer_bytes", "WS_SEND_BUFFER_BYTES", _int_range(0, 64 * 1024 * 1024), "0",
          "Kernel send buffer per WebSocket connection; 0 = the OS default (autotuned)."),
    Field("binance_symbol_aliases", "BINANCE_SYMBOL_ALIASES", _binance_aliases, "",
          "Extra Binance names for simulated symbols, e.g. BTC/USD=BTC/USDT serves BTC/USD "
          "also as BTCUSDT; empty = each symbol only as BASEQUOTE (BTCUSD)."),
    Field("binance_book_depth", "BINANCE_BOOK_DEPTH", _int_range(5, 5000), "100",
          "Levels per side of the Binance view's order book (REST depth and @depth diffs)."),
    Field("binance_max_streams", "BINANCE_MAX_STREAMS", _int_range(1, 1024), "1024",
          "Most streams one Binance WebSocket connection may follow."),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated settings of one service process."""

    service_name: str
    instance_name: str
    service_version: str
    environment: str
    host: str
    http_port: int
    grpc_port: int
    ws_port: int
    redis_url: str
    config_service_url: str
    request_timeout: float
    cache_ttl: float
    health_check_interval: float
    log_level: str
    log_format: str
    symbols: tuple[str, ...]
    tick_interval: float
    candle_interval: float
    seed: int | None
    model_config: dict[str, dict[str, Any]]
    admin_token: str
    chaos_enabled: bool
    max_price_deviation: float
    scenario_timeout_hours: float
    price_breaker_threshold: float
    price_breaker_window: float
    price_breaker_timeout: float
    cache_namespace: str
    redis_timeout: float
    history_backlog: int
    history_batch_size: int
    history_flush_interval: float
    redis_breaker_threshold: int
    redis_breaker_timeout: float
    postgres_url: str
    postgres_schema: str
    postgres_pool_size: int
    postgres_timeout: float
    postgres_backlog: int
    postgres_breaker_timeout: float
    price_feed_sample_interval: float
    snapshot_interval: float
    advertise_address: str
    max_subscribers: int
    max_stream_symbols: int
    slow_consumer_timeout: float
    stream_interval_floor: float
    max_request_bytes: int
    max_history_limit: int
    backfill_days: int
    history_size: int
    shutdown_timeout: float
    drain_delay: float
    sse_retry: float
    reuse_port: bool
    discovery_enabled: bool
    heartbeat_interval: float
    service_ttl: float
    discovery_schemes: tuple[str, ...]
    discovery_namespace: str
    cluster_mode: str
    feed_publish: str
    feed_subscribe: str
    cluster_lease_ttl: float
    cluster_renew_interval: float
    ws_heartbeat_interval: float
    ws_send_buffer_bytes: int
    binance_symbol_aliases: tuple[str, ...]
    binance_book_depth: int
    binance_max_streams: int
    notices: tuple[str, ...] = ()
    """What loading noticed but did not refuse (values adjusted, variables not used), for
    the start-up log and ``mdactors check``."""

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (values already parsed)."""
        return dataclasses.replace(self, **changes)

    def public_view(self) -> dict[str, Any]:
        """Effective settings keyed by env name, with secrets masked."""
        view: dict[str, Any] = {}
        for field in FIELDS:
            value = getattr(self, field.attr)
            if field.secret and value:
                value = "***"
            elif isinstance(value, tuple):
                value = ",".join(value)
            view[field.env] = value
        return view


def read_dotenv(path: Path) -> dict[str, str]:
    """Read ``KEY=VALUE`` lines (``export`` prefix, quotes and comments allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.removeprefix("export ").strip()
        key, sep, value = stripped.partition("=")
        if not sep or not key.strip():
            raise ConfigError(str(path), f"line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[key.strip()] = value
    return values


def _check_cluster(values: Mapping[str, Any]) -> None:
    if values["cluster_mode"] == "redis" and not values["redis_url"]:
        raise ConfigError("CLUSTER_MODE", "redis needs REDIS_URL (the leases and ticks live there)")
    if values["feed_subscribe"] and (values["feed_publish"] or values["cluster_mode"] != "off"):
        raise ConfigError(
            "FEED_SUBSCRIBE",
            "a process that takes the market feed neither publishes it nor joins a Redis cluster",
        )
    if values["cluster_renew_interval"] * 3 > values["cluster_lease_ttl"]:
        raise ConfigError(
            "CLUSTER_RENEW_INTERVAL",
            "must be at most a third of CLUSTER_LEASE_TTL so a lease survives a missed renewal",
        )


ECOSYSTEM_UNUSED: tuple[str, ...] = (
    # the data adapter's and the orchestrator's connection pools and timeouts
    "MAX_CONNECTIONS", "MAX_IDLE_CONNECTIONS", "CONNECTION_MAX_LIFETIME",
    "CONNECTION_MAX_IDLE_TIME", "CONNECTION_TIMEOUT", "IDLE_TIMEOUT", "MAX_RETRIES",
    "RETRY_INTERVAL", "DEFAULT_TTL", "REDIS_POOL_SIZE", "REDIS_MIN_IDLE_CONNS",
    "REDIS_MAX_RETRIES", "REDIS_DIAL_TIMEOUT", "REDIS_READ_TIMEOUT", "REDIS_WRITE_TIMEOUT",
    "SCHEMA_NAME", "REDIS_NAMESPACE", "MONGO_URL",
    # the adapters' own test and performance-test settings
    "TEST_POSTGRES_URL", "TEST_REDIS_URL", "PERF_TEST_SIZE", "PERF_THROUGHPUT_MIN",
    "PERF_LATENCY_MAX", "SKIP_INTEGRATION_TESTS",
    # the Python services' central registry and tracing
    "SERVICE_REGISTRY_URL", "REGISTRATION_RETRY_INTERVAL", "OTEL_SERVICE_NAME",
    "OTEL_EXPORTER_ENDPOINT", "OTEL_INSECURE",
    # the old service's README: real data sources and its own port names
    "COINGECKO_API_KEY", "COINMARKETCAP_API_KEY", "CMC_API_KEY", "BINANCE_API_KEY",
    "ENABLE_COMPRESSION", "MARKET_DATA_PORT", "MARKET_DATA_GRPC_PORT", "MARKET_DATA_LOG_LEVEL",
)  # fmt: skip
"""Variables of the ecosystem's environment files that mdactors reads nothing from.

They are accepted (an ``.env`` shared with other services works) and named once
at start-up, so nobody believes a pool size or an API key took effect. A name
that becomes a setting of ours stops being listed by itself.
"""


def _raw_value(field: Field, sources: Mapping[str, str], notices: list[str]) -> str:
    """``field``'s raw text: its own variable, else the first alias set, else the default."""
    if field.env in sources:
        return sources[field.env]
    for alias, convert in field.aliases:
        if alias in sources:
            try:
                converted = convert(sources[alias])
            except ValueError as error:
                raise ConfigError(alias, str(error)) from None
            notices.append(f"{alias} sets {field.env} ({converted})")
            return converted
    return field.default


def _check_discovery(values: Mapping[str, Any]) -> None:
    if values["service_ttl"] <= values["heartbeat_interval"]:
        raise ConfigError(
            "SERVICE_TTL",
            f"must exceed HEARTBEAT_INTERVAL ({values['service_ttl']:g}s <= "
            f"{values['heartbeat_interval']:g}s): the record would expire between heartbeats",
        )


def _unused(sources: Mapping[str, str]) -> list[str]:
    used = {field.env for field in FIELDS} | {a for field in FIELDS for a, _ in field.aliases}
    return [name for name in ECOSYSTEM_UNUSED if name in sources and name not in used]


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv: Path | None = Path(".env"),
    overrides: Mapping[str, str] | None = None,
) -> Settings:
    """Build validated :class:`Settings`.

    ``overrides`` maps environment-variable names to raw strings (the CLI's
    flags) and wins over everything; ``environ`` defaults to ``os.environ``
    and wins over the ``.env`` file. What was adjusted or left unused is in
    :attr:`Settings.notices`.
    """
    sources: dict[str, str] = {}
    if dotenv is not None:
        sources.update(read_dotenv(dotenv))
    sources.update(os.environ if environ is None else environ)
    sources.update(overrides or {})
    notices: list[str] = []
    values: dict[str, Any] = {}
    for field in FIELDS:
        raw = _raw_value(field, sources, notices)
        try:
            values[field.attr] = field.parse(raw)
        except ValueError as error:
            raise ConfigError(field.env, str(error)) from None
    raw_instance = sources.get("SERVICE_INSTANCE_NAME", "").strip()
    if raw_instance != values["instance_name"]:
        notices.append(
            f"SERVICE_INSTANCE_NAME {raw_instance!r} lower-cased to {values['instance_name']!r}"
        )
    if not values["instance_name"]:
        values["instance_name"] = values["service_name"]
    ports = {name: values[name] for name in ("http_port", "grpc_port", "ws_port") if values[name]}
    if len(set(ports.values())) != len(ports):
        raise ConfigError("HTTP_PORT", f"ports must differ, got {ports}")
    _check_cluster(values)
    _check_discovery(values)
    for alias in values["binance_symbol_aliases"]:
        key, _, pair = alias.partition("=")
        if key not in values["symbols"] or pair in values["symbols"]:
            raise ConfigError(
                "BINANCE_SYMBOL_ALIASES",
                f"{alias}: the key must be simulated and the alias must not be",
            )
    unused = _unused(sources)
    if unused:
        notices.append(f"not used by mdactors (accepted, no effect): {', '.join(unused)}")
    return Settings(**values, notices=tuple(notices))
