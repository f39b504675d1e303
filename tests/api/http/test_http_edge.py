"""The HTTP edge: an answer sent before a large body was read never hangs the connection.

A route may answer before it reads the request body: the admin guard's 401,
a 404, a 415, a 413 from the size limit. The connection is kept alive for
the client's next request, so the unread body must be drained (or the
connection closed); otherwise the next request waits behind bytes the
server never reads, until the client times out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import trio

from mdactors.api.http.body_drain import DrainBody
from tests.conftest import running_service

pytestmark = pytest.mark.timeout(60)

TWO_MB = b"\x00" * (2 * 1024 * 1024)


@pytest.fixture
async def admin_client() -> AsyncIterator[httpx.AsyncClient]:
    env = {"CHAOS_ENABLED": "true", "ADMIN_TOKEN": "s3cret"}
    async with running_service(env) as service:
        base = f"http://127.0.0.1:{service.ports['http']}"
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=base, timeout=10, limits=limits) as client:
            yield client


@pytest.mark.parametrize(
    ("method", "path", "headers", "status"),
    [
        ("POST", "/chaos/price-shock", {"Content-Type": "application/proto"}, 401),
        ("POST", "/chaos/price-shock", {"Authorization": "Bearer s3cret"}, 413),
        ("POST", "/no/such/route", {"Content-Type": "application/octet-stream"}, 404),
        ("PUT", "/api/v1/health", {"Content-Type": "application/json"}, 405),
    ],
)
async def test_an_early_answer_to_a_large_body_leaves_the_connection_usable(
    admin_client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str], status: int
) -> None:
    early = await admin_client.request(method, path, content=TWO_MB, headers=headers)
    assert early.status_code == status
    assert early.json()["error"]
    # Same pooled connection (one allowed) or a fresh one if the server closed it:
    # either way the next request is answered, not left hanging.
    after = await admin_client.get("/api/v1/health")
    assert after.status_code == 200
    assert after.json()["status"]


async def test_a_chunked_body_answered_early_is_drained_too(
    admin_client: httpx.AsyncClient,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(32):
            yield b"\x00" * 65536

    early = await admin_client.post("/chaos/price-shock", content=chunks())
    assert early.status_code == 401
    after = await admin_client.get("/api/v1/health")
    assert after.status_code == 200


# -- the middleware alone, without sockets ------------------------------------


class Upload:
    """A request body of ``chunks`` chunks of 64 KiB, as the server hands them over."""

    def __init__(self, chunks: int) -> None:
        self.left = chunks
        self.all_read = trio.Event()

    async def receive(self) -> dict[str, object]:
        if self.left == 0:
            await trio.sleep_forever()  # the body ended: nothing more comes
        self.left -= 1
        if self.left == 0:
            self.all_read.set()
        return {"type": "http.request", "body": b"\x00" * 65536, "more_body": self.left > 0}


async def answer_early(
    scope: object, receive: object, send: Callable[..., Awaitable[None]]
) -> None:
    await send({"type": "http.response.start", "status": 401, "headers": []})
    await send({"type": "http.response.body", "body": b"{}", "more_body": False})


async def test_the_rest_of_the_body_is_read_before_the_answer_ends() -> None:
    upload = Upload(32)
    sent: list[tuple[str, int]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append((str(message["type"]), upload.left))

    with trio.fail_after(5):
        await DrainBody(answer_early, limit=4 << 20)({"type": "http"}, upload.receive, send)
    assert sent == [("http.response.start", 32), ("http.response.body", 0)]


async def test_past_the_limit_the_answer_goes_out_while_the_body_is_still_read() -> None:
    upload = Upload(32)

    async def send(message: dict[str, object]) -> None:
        if not message.get("more_body", True) and message["type"] == "http.response.body":
            # hypercorn's last send waits until its queue to the app has room
            await upload.all_read.wait()

    with trio.fail_after(5):
        await DrainBody(answer_early, limit=256 << 10)({"type": "http"}, upload.receive, send)
    assert upload.left == 0
