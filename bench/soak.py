"""``bench soak``: churn every streaming transport against one server for a long time.

Long-lived connections must not rot: a server whose per-connection state
grows with every stream it carried gets slower and bigger under clients
that resubscribe. The soak starts one ``mdactors serve``, runs the churn
clients of :mod:`bench.churn` (one process per transport) and every
``sample`` seconds records the server's RSS, its CPU time and the streams
each transport completed or failed. The verdict compares the last window
with the first: RSS growth per 1,000 streams, throughput and CPU per stream.

With ``faults``, the bench also starts a private ``redis-server`` and a
configuration-service stub for the server, and on a schedule kills Redis,
restarts it, makes the stub answer 500 and heals it; after each step it
polls ``/api/v1/ready`` until the dependency's check tells the truth (or a
bound passes, which is recorded as untruthful). PostgreSQL is not faulted
yet (its store is another issue's work).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.churn import ChurnSpec, churn_main
from bench.machine import cpu_seconds, load_average, rss_bytes
from bench.servers import Server, start_mdactors

__all__ = ["SoakPlan", "run_soak", "verdict"]

#: Which server port each transport's clients use.
_PORTS = {"grpc": "grpc", "connect": "http", "sse": "http", "ws": "ws", "binance": "ws"}
#: How long a dependency's check may take to tell the truth after a fault step.
#: Both breakers wait 30 s (REDIS_BREAKER_TIMEOUT, the config client's) before they
#: try a dependency again; the config client also retries a failed key after 5 s.
_TRUTH_BOUND_S = {"redis": 45.0, "config": 75.0}


@dataclass(frozen=True)
class SoakPlan:
    """What one soak runs."""

    transports: tuple[str, ...]
    duration: float
    sample: float
    interval: str
    symbol: str = "BTC/USD"
    grpc_channels: int = 10
    grpc_streams: int = 150
    concurrency: int = 20
    """Concurrent streams of each other transport."""
    faults: bool = False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisProcess:
    """A private ``redis-server`` (no persistence) that can be killed and restarted."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("--faults needs redis-server installed")
        self.binary = binary
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start on the same port; return once it accepts connections (5 s at most)."""
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=5)
            self.process = None


class ConfigStub:
    """A configuration service that knows no key (404), or fails every request (500)."""

    def __init__(self) -> None:
        self.failing = False
        self.requests = 0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests += 1
                status = 500 if stub.failing else 404
                body = json.dumps({"error": "injected" if stub.failing else "not_found"})
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def readiness(server: Server) -> tuple[int, dict]:
    """``/api/v1/ready``: HTTP status and body (status 0 when it did not answer)."""
    url = f"http://{server.host}:{server.ports['http']}/api/v1/ready"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")
    except (OSError, ValueError):
        return 0, {}


def _check_status(body: dict, name: str) -> str | None:
    checks = body.get("checks", body.get("dependencies", {}))
    check = checks.get(name) if isinstance(checks, dict) else None
    return check.get("status") if isinstance(check, dict) else None


@dataclass
class FaultStep:
    """One step of the fault schedule: at ``at`` (fraction of the run) do ``act``; then the
    ``check`` of readiness must become ``expected`` within the dependency's bound."""

    at: float
    name: str
    act: Callable[[], None]
    check: str
    expected: str
    bound: float


def _fault_steps(redis: RedisProcess, config: ConfigStub) -> list[FaultStep]:
    def failing(value: bool) -> Callable[[], None]:
        def act() -> None:
            config.failing = value

        return act

    redis_bound, config_bound = _TRUTH_BOUND_S["redis"], _TRUTH_BOUND_S["config"]
    return [
        FaultStep(0.15, "redis killed", redis.kill, "history", "degraded", redis_bound),
        FaultStep(0.30, "redis restarted", redis.start, "history", "ok", redis_bound),
        FaultStep(0.45, "config service 500", failing(True), "config_service", "degraded",
                  config_bound),
        FaultStep(0.60, "config service healed", failing(False), "config_service", "ok",
                  config_bound),
    ]  # fmt: skip


def _run_faults(
    server: Server,
    config: ConfigStub | None,
    steps: Sequence[FaultStep],
    started: float,
    duration: float,
    stop: threading.Event,
) -> list[dict[str, object]]:
    """Run the schedule; per step what readiness said and how long it took to say it."""
    records: list[dict[str, object]] = []
    for step in steps:
        if stop.wait(max(0.0, started + step.at * duration - time.monotonic())):
            break
        acted = time.monotonic()
        asked = config.requests if config is not None else 0
        step.act()
        record: dict[str, object] = {
            "t_s": round(acted - started, 1),
            "step": step.name,
            "check": step.check,
            "expected": step.expected,
        }
        answers: set[int] = set()
        observed = None
        while time.monotonic() - acted < step.bound and not stop.is_set():
            status, body = readiness(server)
            answers.add(status)
            observed = _check_status(body, step.check)
            if observed == step.expected:
                break
            time.sleep(0.5)
        record.update(
            observed=observed,
            # The run ended before the check said either: no verdict on this step.
            truthful=observed == step.expected
            if observed == step.expected or not stop.is_set()
            else None,
            seconds_to_truth=round(time.monotonic() - acted, 1),
            ready_http_statuses=sorted(answers),
            config_requests=(config.requests - asked) if config is not None else None,
        )
        print(f"… fault: {json.dumps(record)}", flush=True)
        records.append(record)
    return records


@contextmanager
def _churners(plan: SoakPlan, server: Server) -> Iterator[dict[str, tuple]]:
    """One churn process per transport; yields transport → (completed, failed) counters."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    counters: dict[str, tuple] = {}
    processes = []
    for seed, transport in enumerate(plan.transports):
        grpc = transport == "grpc"
        spec = ChurnSpec(
            transport,
            server.host,
            server.ports[_PORTS[transport]],
            plan.symbol,
            concurrency=plan.grpc_streams if grpc else plan.concurrency,
            channels=plan.grpc_channels if grpc else 1,
            seed=seed,
        )
        completed, failed = context.Value("q", 0), context.Value("q", 0)
        counters[transport] = (completed, failed)
        process = context.Process(
            target=churn_main, args=(spec, completed, failed, stop), name=f"churn-{transport}"
        )
        process.start()
        processes.append(process)
    try:
        yield counters
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=STOP_GRACE_S)
            if process.is_alive():
                process.terminate()
                process.join()


STOP_GRACE_S = 40.0


def _sample(server: Server, counters: dict[str, tuple], started: float) -> dict[str, object]:
    assert server.pid is not None
    return {
        "t_s": round(time.monotonic() - started, 1),
        "rss_mb": round(rss_bytes(server.pid) / 2**20, 1),
        "cpu_s": round(cpu_seconds(server.pid), 2),
        "completed": {name: pair[0].value for name, pair in counters.items()},
        "failed": {name: pair[1].value for name, pair in counters.items()},
        "load_average": load_average()[0],
    }


def windows(samples: Sequence[dict]) -> list[dict[str, object]]:
    """Per sampling window: streams completed (per transport and in all), CPU ms per
    stream and RSS at its end."""
    out = []
    for before, after in itertools.pairwise(samples):
        per = {
            name: after["completed"][name] - before["completed"][name]
            for name in after["completed"]
        }
        total = sum(per.values())
        cpu = after["cpu_s"] - before["cpu_s"]
        out.append({
            "t_s": after["t_s"],
            "streams": total,
            "per_transport": per,
            "failed": sum(after["failed"].values()) - sum(before["failed"].values()),
            "cpu_ms_per_stream": round(1000 * cpu / total, 2) if total else None,
            "server_cpu_percent": round(100 * cpu / (after["t_s"] - before["t_s"]), 1),
            "rss_mb": after["rss_mb"],
        })  # fmt: skip
    return out


def verdict(samples: Sequence[dict]) -> dict[str, object]:
    """RSS growth per 1,000 streams (after the first window: start-up and warm-up are
    not growth) and the last window against the first."""
    spans = windows(samples)
    if len(spans) < 2:
        return {"line": "verdict: too short (need at least two sampling windows)"}
    first, last = spans[0], spans[-1]
    streams_after_first = sum(span["streams"] for span in spans[1:])  # type: ignore[misc]
    growth_mb = float(last["rss_mb"]) - float(first["rss_mb"])  # type: ignore[arg-type]
    per_1000 = 1000 * growth_mb / streams_after_first if streams_after_first else None
    throughput = last["streams"] / first["streams"] if first["streams"] else None  # type: ignore[operator]
    cpu_first, cpu_last = first["cpu_ms_per_stream"], last["cpu_ms_per_stream"]
    cpu_ratio = cpu_last / cpu_first if cpu_first and cpu_last else None  # type: ignore[operator]
    failed = sum(span["failed"] for span in spans)  # type: ignore[misc]
    total = sum(span["streams"] for span in spans)  # type: ignore[misc]
    line = (
        f"verdict: {total} streams, {failed} failed; RSS {first['rss_mb']} → {last['rss_mb']} MB "
        f"({_fmt(per_1000, '+.3f')} MB per 1,000 streams); last window {last['streams']} streams "
        f"vs first {first['streams']} ({_fmt(throughput, '.2f')}×); CPU per stream "
        f"{cpu_first} → {cpu_last} ms ({_fmt(cpu_ratio, '.2f')}×)"
    )
    return {
        "streams": total,
        "failed": failed,
        "rss_growth_mb": round(growth_mb, 1),
        "rss_mb_per_1000_streams": per_1000,
        "throughput_last_vs_first": throughput,
        "cpu_per_stream_last_vs_first": cpu_ratio,
        "line": line,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def run_soak(plan: SoakPlan) -> dict[str, object]:
    """Run ``plan``; return the rows of the result document (samples, windows, faults, verdict)."""
    with ExitStack() as stack:
        env: dict[str, str] = {}
        steps: list[FaultStep] = []
        config: ConfigStub | None = None
        if plan.faults:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            redis = RedisProcess(directory)
            redis.start()
            stack.callback(redis.kill)
            config = ConfigStub()
            stack.callback(config.close)
            # A key the service does not find (404) is asked again after
            # CACHE_TTL (5 min by default): 5 s, so the stub's 500s are seen.
            env = {"REDIS_URL": redis.url, "CONFIG_SERVICE_URL": config.url, "CACHE_TTL": "5s"}
            steps = _fault_steps(redis, config)
        server = stack.enter_context(start_mdactors([plan.symbol], plan.interval, env=env))
        counters = stack.enter_context(_churners(plan, server))
        started = time.monotonic()
        samples = [_sample(server, counters, started)]
        stop = threading.Event()
        faults: list[dict[str, object]] = []

        def faulting() -> None:
            faults.extend(_run_faults(server, config, steps, started, plan.duration, stop))

        fault_thread = threading.Thread(target=faulting, daemon=True)
        fault_thread.start()
        try:
            while time.monotonic() - started < plan.duration - 1e-3:
                wake = started + len(samples) * plan.sample
                time.sleep(max(0.0, min(wake, started + plan.duration) - time.monotonic()))
                samples.append(_sample(server, counters, started))
                span = windows(samples[-2:])[0]
                print(f"… {json.dumps(span)}", flush=True)
        finally:
            stop.set()
            fault_thread.join()
        ready_at_end = readiness(server)
    return {
        "samples": samples,
        "windows": windows(samples),
        "faults": faults,
        "ready_at_end": {"http_status": ready_at_end[0], "body": ready_at_end[1]},
        "verdict": verdict(samples),
    }
