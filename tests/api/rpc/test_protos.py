"""The generated protobuf modules: fresh, wire-compatible, and importable next to grpcio's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tests.conftest import ROOT

COMMITTED = ROOT / "src" / "mdactors" / "_proto"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_protos", ROOT / "scripts" / "gen_protos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_protos", module)
    spec.loader.exec_module(module)
    return module


def test_committed_generated_code_is_fresh(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools", reason="grpcio-tools (dev extra) regenerates the protos")
    out = tmp_path / "_proto"
    _load_generator().generate(out)
    fresh = {path.relative_to(out): path.read_text() for path in out.rglob("*") if path.is_file()}
    committed = {
        path.relative_to(COMMITTED): path.read_text()
        for path in COMMITTED.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert sorted(fresh) == sorted(committed), "run: python scripts/gen_protos.py"
    stale = [str(name) for name, text in fresh.items() if committed[name] != text]
    assert not stale, f"stale generated files {stale}: run python scripts/gen_protos.py"


def test_contract_field_numbers_are_the_ecosystem_ones() -> None:
    from mdactors._proto import marketdata_pb2 as pb

    def numbers(message) -> dict[str, int]:
        return {field.name: field.number for field in message.DESCRIPTOR.fields}

    assert pb.DESCRIPTOR.package == "marketdata"
    assert numbers(pb.GetPriceRequest) == {"symbol": 1}
    response = numbers(pb.GetPriceResponse)
    assert {k: response[k] for k in ("symbol", "price", "timestamp", "source")} == {
        "symbol": 1,
        "price": 2,
        "timestamp": 3,
        "source": 4,
    }
    assert numbers(pb.StreamPricesRequest) == {"symbols": 1, "update_interval_ms": 2}
    update = numbers(pb.PriceUpdate)
    expected = {"symbol": 1, "price": 2, "volume": 3, "timestamp": 4, "source": 5}
    assert {k: update[k] for k in expected} == expected
    assert update["change_info"] == 6
    assert all(update[k] > 6 for k in ("sequence", "bid", "ask"))
    assert numbers(pb.PriceChangeInfo) == {
        "change_amount": 1,
        "change_percentage": 2,
        "daily_high": 3,
        "daily_low": 4,
        "daily_volume": 5,
    }
    assert numbers(pb.HealthCheckResponse) == {
        "status": 1,
        "message": 2,
        "timestamp": 3,
        "details": 4,
    }
    assert pb.SimulationType.Value("TREND_FOLLOWING") == 4
    assert pb.ScenarioType.Value("CONSOLIDATION") == 5
    assert pb.HealthStatus.Value("SERVICE_UNKNOWN") == 3
    methods = [m.name for m in pb.DESCRIPTOR.services_by_name["MarketDataService"].methods]
    assert methods == [
        "GetPrice",
        "StreamPrices",
        "GenerateSimulation",
        "StreamScenario",
        "HealthCheck",
    ]


def test_health_proto_matches_grpcio_health_checking_byte_for_byte() -> None:
    from grpc_health.v1 import health_pb2 as upstream

    from mdactors._proto.grpc_health.v1 import health_pb2 as ours

    def serialized(module) -> bytes:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        return proto.SerializeToString()

    assert serialized(ours) == serialized(upstream)
    assert ours.HealthCheckRequest is upstream.HealthCheckRequest


def test_reflection_v1alpha_proto_matches_grpcio_reflection_byte_for_byte() -> None:
    from grpc_reflection.v1alpha import reflection_pb2 as upstream

    from mdactors._proto.grpc_reflection.v1 import reflection_pb2 as v1
    from mdactors._proto.grpc_reflection.v1alpha import reflection_pb2 as ours

    def serialized(module) -> bytes:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        return proto.SerializeToString()

    assert serialized(ours) == serialized(upstream)
    assert ours.ServerReflectionRequest is upstream.ServerReflectionRequest
    # v1 is the same layout under its stable package.
    for name, message in ours.DESCRIPTOR.message_types_by_name.items():
        stable = v1.DESCRIPTOR.message_types_by_name[name]
        assert [(f.name, f.number, f.type) for f in message.fields] == [
            (f.name, f.number, f.type) for f in stable.fields
        ]
