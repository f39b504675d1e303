"""Server reflection on the gRPC port: ``grpc.reflection.v1`` and ``v1alpha`` on purerpc.

Thin: the answers come from :class:`~mdactors.api.rpc.reflection.Reflection`;
each version's servicer only moves one stream's requests to it and its
responses back (the dispatcher in :mod:`mdactors.api.grpc.transport` runs the
bidirectional stream). grpcurl asks v1 first and falls back to v1alpha.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import purerpc

from mdactors._proto.grpc_reflection.v1 import reflection_grpc as v1_grpc
from mdactors._proto.grpc_reflection.v1alpha import reflection_grpc as v1alpha_grpc
from mdactors.api.grpc.transport import GrpcCall
from mdactors.api.rpc.reflection import Reflection

__all__ = ["reflection_services"]


class _Answers:
    """``ServerReflectionInfo`` for either version (their messages share one layout)."""

    def __init__(self, reflection: Reflection) -> None:
        self.reflection = reflection

    async def ServerReflectionInfo(
        self, input_messages: AsyncIterator[Any], request: GrpcCall
    ) -> AsyncIterator[Any]:
        """One answer per request, in order, until the client half-closes."""
        stream = self.reflection.stream()
        async for message in input_messages:
            yield stream.answer(message)


class _V1(_Answers, v1_grpc.ServerReflectionServicer):
    """``grpc.reflection.v1.ServerReflection``."""


class _V1Alpha(_Answers, v1alpha_grpc.ServerReflectionServicer):
    """``grpc.reflection.v1alpha.ServerReflection``."""


def reflection_services(reflection: Reflection | None = None) -> list[purerpc.Service]:
    """Both reflection versions' services, answering from ``reflection``."""
    reflection = reflection or Reflection()
    return [_V1(reflection).service, _V1Alpha(reflection).service]
