"""Settings: defaults, .env, precedence, Go durations, validation and the CLI's exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mdactors.settings import ConfigError, load_settings, parse_duration
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("300ms", 0.3), ("5s", 5.0), ("1h30m", 5400.0), ("1.5s", 1.5), ("0", 0.0), ("2m3s", 123.0),
     ("250us", 0.00025), ("10ns", 1e-8)],
)  # fmt: skip
def test_go_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "-5s", "5x", "s", "1h-30m", "5 s", "1.2.3s"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_defaults_match_the_spec() -> None:
    settings = load_settings(environ={}, dotenv=None)
    assert settings.service_name == "market-data-simulator"
    assert settings.instance_name == "market-data-simulator"
    assert (settings.http_port, settings.grpc_port, settings.ws_port) == (8080, 50051, 8765)
    assert settings.symbols[:5] == ("BTC/USD", "ETH/USD", "ADA/USD", "SOL/USD", "DOT/USD")
    assert "USDT/USD" in settings.symbols
    assert settings.cache_ttl == 300.0
    assert settings.cache_namespace == "market_data:"
    assert settings.redis_url == ""


def test_dotenv_is_read_without_overriding_the_environment(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# comment\nexport HTTP_PORT=9000\nGRPC_PORT='9001'\nLOG_LEVEL=debug # trailing\n"
    )
    settings = load_settings(environ={"HTTP_PORT": "9100"}, dotenv=dotenv)
    assert settings.http_port == 9100
    assert settings.grpc_port == 9001
    assert settings.log_level == "DEBUG"


def test_flags_override_the_environment() -> None:
    settings = load_settings(
        environ={"HTTP_PORT": "9100", "DEFAULT_SYMBOLS": "BTC"},
        dotenv=None,
        overrides={"HTTP_PORT": "9200", "DEFAULT_SYMBOLS": "eth-usd,SOL/USD,eth/usd"},
    )
    assert settings.http_port == 9200
    assert settings.symbols == ("ETH/USD", "SOL/USD")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"HTTP_PORT": "http"}, "HTTP_PORT"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT"),
        ({"GRPC_PORT": "8080"}, "HTTP_PORT"),
        ({"PRICE_UPDATE_INTERVAL": "fast"}, "PRICE_UPDATE_INTERVAL"),
        ({"PRICE_UPDATE_INTERVAL": "0s"}, "PRICE_UPDATE_INTERVAL"),
        ({"SERVICE_INSTANCE_NAME": "Bad_Name"}, "SERVICE_INSTANCE_NAME"),
        ({"SERVICE_INSTANCE_NAME": "a" * 64}, "SERVICE_INSTANCE_NAME"),
        ({"SERVICE_INSTANCE_NAME": "-edge"}, "SERVICE_INSTANCE_NAME"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"DEFAULT_SYMBOLS": "BTC/USD,$$$"}, "DEFAULT_SYMBOLS"),
        ({"DEFAULT_SYMBOLS": " , "}, "DEFAULT_SYMBOLS"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
        ({"SIM_SEED": "-1"}, "SIM_SEED"),
        ({"CHAOS_ENABLED": "maybe"}, "CHAOS_ENABLED"),
        ({"CANDLE_INTERVAL": "7m"}, "CANDLE_INTERVAL"),
        ({"POSTGRES_URL": "localhost:5432"}, "POSTGRES_URL"),
        ({"POSTGRES_URL": "postgresql://db:port/market"}, "POSTGRES_URL"),
        ({"POSTGRES_URL": "postgresql://u@db/market?sslmode=sometimes"}, "POSTGRES_URL"),
        ({"POSTGRES_URL": "postgresql://u@db/market?nosuch=1"}, "POSTGRES_URL"),
        ({"POSTGRES_SCHEMA": "market-data"}, "POSTGRES_SCHEMA"),
        ({"POSTGRES_SCHEMA": "x; DROP TABLE candles"}, "POSTGRES_SCHEMA"),
        ({"POSTGRES_POOL_SIZE": "0"}, "POSTGRES_POOL_SIZE"),
        ({"POSTGRES_TIMEOUT": "0s"}, "POSTGRES_TIMEOUT"),
        ({"PRICE_FEED_SAMPLE_INTERVAL": "often"}, "PRICE_FEED_SAMPLE_INTERVAL"),
        ({"SNAPSHOT_INTERVAL": "0"}, "SNAPSHOT_INTERVAL"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env, dotenv=None)
    assert caught.value.variable == variable


def test_secrets_are_masked_in_the_public_view() -> None:
    settings = load_settings(
        environ={"REDIS_URL": "redis://:hunter2@localhost:6379/0", "ADMIN_TOKEN": "hunter2"},
        dotenv=None,
    )
    view = settings.public_view()
    assert "hunter2" not in str(view)
    assert view["REDIS_URL"] == "***"


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mdactors", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )


def test_cli_exits_2_with_one_line_naming_the_variable() -> None:
    result = _cli("check", "--env-file", "/nonexistent", env={"HTTP_PORT": "eighty"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "HTTP_PORT" in lines[0]


def test_malformed_postgres_url_exits_2_naming_it_without_its_password() -> None:
    result = _cli(
        "check", "--env-file", "/nonexistent", env={"POSTGRES_URL": "postgresql://u:pw1@db:x/m"}
    )
    assert result.returncode == 2
    assert "POSTGRES_URL" in result.stderr
    assert "pw1" not in result.stderr


def test_postgres_settings_default_to_off_and_the_ecosystem_schema() -> None:
    settings = load_settings(environ={"POSTGRES_URL": "postgresql://u:pw@db:5432/m"}, dotenv=None)
    assert settings.postgres_schema == "market_data"
    assert (settings.price_feed_sample_interval, settings.snapshot_interval) == (1.0, 60.0)
    assert settings.public_view()["POSTGRES_URL"] == "***"
    assert load_settings(environ={}, dotenv=None).postgres_url == ""
    notices = load_settings(environ={"POSTGRES_URL": ""}, dotenv=None).notices
    assert not any("POSTGRES_URL" in notice for notice in notices), "a setting now, not unused"


def test_cli_check_prints_effective_settings_with_flag_overrides() -> None:
    result = _cli("check", "--env-file", "/nonexistent", "--http-port", "9999")
    assert result.returncode == 0, result.stderr
    assert '"HTTP_PORT": 9999' in result.stdout


@pytest.mark.parametrize("namespace", ["market_data", "market_data:", " market_data "])
def test_cache_namespace_gets_its_colon(namespace: str) -> None:
    settings = load_settings(environ={"CACHE_NAMESPACE": namespace}, dotenv=None)
    assert settings.cache_namespace == "market_data:"


@pytest.mark.parametrize(
    ("text", "percent"),
    [("0.25", 25.0), ("25", 25.0), ("25%", 25.0), ("0.5%", 0.5), ("1", 1.0), ("99", 99.0)],
)
def test_max_price_deviation_takes_fraction_and_percent_forms(text: str, percent: float) -> None:
    settings = load_settings(environ={"MAX_PRICE_DEVIATION": text}, dotenv=None)
    assert settings.max_price_deviation == pytest.approx(percent)


@pytest.mark.parametrize("text", ["0", "-0.25", "100", "150%", "abc", "0.001%"])
def test_max_price_deviation_out_of_range_is_refused(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"MAX_PRICE_DEVIATION": text}, dotenv=None)
    assert caught.value.variable == "MAX_PRICE_DEVIATION"


@pytest.mark.parametrize(
    ("text", "seconds"), [("1m", 60), ("15m", 900), ("4h", 14_400), ("1d", 86_400), ("24h", 86_400)]
)
def test_candle_interval_takes_every_candle_interval(text: str, seconds: int) -> None:
    settings = load_settings(environ={"CANDLE_INTERVAL": text}, dotenv=None)
    assert settings.candle_interval == seconds


def test_candle_interval_that_no_candle_has_is_refused() -> None:
    with pytest.raises(ConfigError, match="CANDLE_INTERVAL"):
        load_settings(environ={"CANDLE_INTERVAL": "2h"}, dotenv=None)


def test_service_ttl_is_honoured_and_must_exceed_the_heartbeat() -> None:
    settings = load_settings(
        environ={"SERVICE_TTL": "90s", "HEARTBEAT_INTERVAL": "30s"}, dotenv=None
    )
    assert (settings.service_ttl, settings.heartbeat_interval) == (90.0, 30.0)
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"SERVICE_TTL": "30s", "HEARTBEAT_INTERVAL": "30s"}, dotenv=None)
    assert caught.value.variable == "SERVICE_TTL"


def test_older_names_still_set_their_settings() -> None:
    settings = load_settings(
        environ={
            "DISCOVERY_TTL": "45s",
            "DISCOVERY_HASH_SCHEME": "true",
            "TICK_FREQUENCY_MS": "100",
        },
        dotenv=None,
    )
    assert settings.service_ttl == 45.0
    assert settings.discovery_schemes == ("services", "registry")
    assert settings.tick_interval == pytest.approx(0.1)
    assert any("DISCOVERY_TTL sets SERVICE_TTL" in notice for notice in settings.notices)
    own = load_settings(
        environ={"SERVICE_TTL": "60s", "DISCOVERY_TTL": "45s", "PRICE_UPDATE_INTERVAL": "1s",
                 "TICK_FREQUENCY_MS": "100"},
        dotenv=None,
    )  # fmt: skip
    assert (own.service_ttl, own.tick_interval) == (60.0, 1.0)


def test_unknown_discovery_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="DISCOVERY_SCHEMES"):
        load_settings(environ={"DISCOVERY_SCHEMES": "services,consul"}, dotenv=None)


def test_upper_case_instance_name_is_lowered_with_a_notice() -> None:
    settings = load_settings(environ={"SERVICE_INSTANCE_NAME": "Market-Data-1"}, dotenv=None)
    assert settings.instance_name == "market-data-1"
    assert any("lower-cased" in notice for notice in settings.notices)
    with pytest.raises(ConfigError, match="SERVICE_INSTANCE_NAME"):
        load_settings(environ={"SERVICE_INSTANCE_NAME": "market_data"}, dotenv=None)


def test_ecosystem_variables_we_do_not_use_are_listed_once() -> None:
    settings = load_settings(
        environ={"REDIS_POOL_SIZE": "10", "COINGECKO_API_KEY": "secret-key", "HTTP_PORT": "8080"},
        dotenv=None,
    )
    (notice,) = [n for n in settings.notices if n.startswith("not used")]
    assert "REDIS_POOL_SIZE" in notice and "COINGECKO_API_KEY" in notice
    assert "secret-key" not in notice
    assert "HTTP_PORT" not in notice


def test_no_notices_by_default() -> None:
    assert load_settings(environ={}, dotenv=None).notices == ()


def test_the_committed_env_example_passes_check() -> None:
    example = ROOT / ".env.example"
    result = _cli("check", "--env-file", str(example))
    assert result.returncode == 0, result.stderr
    settings = json.loads(result.stdout)
    assert settings["CACHE_NAMESPACE"] == "market_data:"
    assert settings["CANDLE_INTERVAL"] == 86400.0
    assert settings["MAX_PRICE_DEVIATION"] == pytest.approx(25.0)
    assert (settings["SERVICE_TTL"], settings["HEARTBEAT_INTERVAL"]) == (90.0, 30.0)
    assert "REDIS_POOL_SIZE" in result.stderr, "unused ecosystem variables are named"


def test_readme_configuration_table_lists_every_setting_with_its_default() -> None:
    from mdactors.settings import FIELDS

    readme = (ROOT / "README.md").read_text()
    for field in FIELDS:
        default = f"`{field.default}`" if field.default else "(empty)"
        assert f"| `{field.env}` | {default} |" in readme, field.env
