"""The ``mdactors`` command: ``serve``, ``check``, ``simulate``, ``replay`` and ``bench``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from mdactors import __version__
from mdactors.domain.replay import ReplayFileError, read_replay
from mdactors.engine.replay import ReplayOptions
from mdactors.logs import configure_logging
from mdactors.settings import ConfigError, Settings, load_settings
from mdactors.tools import simulate
from mdactors.tools.probes import probes_for
from mdactors.tools.workers import check_workers, run_workers

__all__ = ["main"]

# flag → environment variable it overrides
_FLAG_ENV = {
    "host": "HOST",
    "http_port": "HTTP_PORT",
    "grpc_port": "GRPC_PORT",
    "ws_port": "WS_PORT",
    "symbols": "DEFAULT_SYMBOLS",
    "seed": "SIM_SEED",
    "interval": "PRICE_UPDATE_INTERVAL",
    "log_level": "LOG_LEVEL",
    "log_format": "LOG_FORMAT",
    "redis_url": "REDIS_URL",
}


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="bind address (HOST)")
    parser.add_argument("--http-port", help="HTTP port (HTTP_PORT)")
    parser.add_argument("--grpc-port", help="gRPC port (GRPC_PORT)")
    parser.add_argument("--ws-port", help="WebSocket port (WS_PORT)")
    parser.add_argument("--symbols", help="comma-separated symbols (DEFAULT_SYMBOLS)")
    parser.add_argument("--seed", help="seed for a reproducible run (SIM_SEED)")
    parser.add_argument("--interval", help="tick interval, e.g. 250ms (PRICE_UPDATE_INTERVAL)")
    parser.add_argument("--log-level", help="DEBUG, INFO, ... (LOG_LEVEL)")
    parser.add_argument("--log-format", help="json or text (LOG_FORMAT)")
    parser.add_argument("--redis-url", help="Redis URL (REDIS_URL)")
    parser.add_argument("--env-file", default=".env", help="dotenv file (default .env)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdactors", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mdactors {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the service")
    _add_setting_flags(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes sharing the ports (SO_REUSEPORT) and one market through Redis",
    )
    check = commands.add_parser(
        "check", help="validate the configuration, print it, probe the configured dependencies"
    )
    _add_setting_flags(check)
    simulate_cmd = commands.add_parser(
        "simulate", help="write a simulated path or scenario as CSV or JSON lines"
    )
    simulate.add_arguments(simulate_cmd)
    replay = commands.add_parser(
        "replay", help="serve a recorded CSV/JSON-lines file of ticks or candles as the live feed"
    )
    replay.add_argument("file", help="recorded ticks or OHLCV candles (see README)")
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1.0)")
    replay.add_argument("--loop", action="store_true", help="start over at the end of the file")
    _add_setting_flags(replay)
    commands.add_parser(
        "bench", add_help=False, help="the tick-latency harness (mdactors bench --help)"
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        env: str(getattr(args, flag))
        for flag, env in _FLAG_ENV.items()
        if getattr(args, flag, None) is not None
    }
    return load_settings(dotenv=Path(args.env_file), overrides=overrides)


def _serve(settings: Settings, replay: ReplayOptions | None = None) -> int:
    from mdactors.app import build_service

    configure_logging(settings.log_level, settings.log_format)
    service = build_service(settings, replay=replay)
    trio.run(service.run)
    return 0


def _without_workers(argv: list[str]) -> list[str]:
    """``argv`` minus its ``--workers`` option: what each worker runs."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--workers":
            skip = True
        elif not arg.startswith("--workers="):
            kept.append(arg)
    return kept


def _replay_options(args: argparse.Namespace) -> ReplayOptions:
    """Read and check the whole file before serving; :class:`ReplayFileError` names the line."""
    if not args.speed > 0:
        raise ValueError(f"--speed must be positive, got {args.speed}")
    try:
        text = Path(args.file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {args.file}: {error}") from None
    return ReplayOptions(read_replay(text), speed=args.speed, loop=args.loop)


def _check(settings: Settings) -> int:
    """Print the settings (stdout) and each configured dependency's reachability (stderr).

    Exit 1 when a configured dependency is unreachable (2 is bad configuration).
    """
    for notice in settings.notices:
        print(f"mdactors check: {notice}", file=sys.stderr)
    print(json.dumps(settings.public_view(), indent=2))
    unreachable = 0
    for probe in probes_for(settings):
        answer = probe()
        print(f"mdactors check: {answer.line()}", file=sys.stderr)
        unreachable += not answer.reachable
    return 1 if unreachable else 0


def _bench(argv: list[str]) -> int:
    """``mdactors bench ...`` = ``python -m bench ...`` (needs a source checkout)."""
    checkout = Path(__file__).resolve().parents[2]
    if not (checkout / "bench" / "__init__.py").is_file():
        print("mdactors bench: run it from a source checkout (bench/ not found)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(checkout))
    from bench.cli import main as bench_main

    return bench_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mdactors`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "simulate":
        return simulate.run(args)
    try:
        settings = _settings(args)
    except ConfigError as error:
        print(f"mdactors: invalid configuration: {error}", file=sys.stderr)
        return 2
    if args.command == "serve":
        if args.workers > 1:
            problem = check_workers(settings, args.workers)
            if problem is not None:
                print(f"mdactors serve: {problem}", file=sys.stderr)
                return 2
            return run_workers(settings, args.workers, _without_workers(argv))
        return _serve(settings)
    if args.command == "replay":
        try:
            options = _replay_options(args)
        except ReplayFileError as error:
            print(f"mdactors replay: {args.file}: {error}", file=sys.stderr)
            return 2
        except ValueError as error:
            print(f"mdactors replay: {error}", file=sys.stderr)
            return 2
        return _serve(settings, options)
    return _check(settings)


if __name__ == "__main__":
    sys.exit(main())
