"""KeepAliveLimit: the Nth call on one connection is answered with ``Connection: close``."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from nluserve.api.middleware import KeepAliveLimit


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-a", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _headers(mw: KeepAliveLimit, client: tuple[str, int] | None) -> list[tuple[bytes, bytes]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "client": client, "method": "GET", "path": "/"}
    asyncio.run(mw(scope, receive, send))
    assert sent[1]["body"] == b"ok"
    return list(sent[0]["headers"])


def test_every_nth_call_on_a_connection_closes_it() -> None:
    mw = KeepAliveLimit(_app, limit=3)
    a, b = ("10.0.0.1", 4000), ("10.0.0.1", 4001)
    closes = [(b"connection", b"close") in _headers(mw, a) for _ in range(7)]
    assert closes == [False, False, True, False, False, True, False]
    # Another connection has its own count.
    assert (b"connection", b"close") not in _headers(mw, b)
    assert (b"x-a", b"1") in _headers(mw, b)


def test_zero_never_closes_and_unix_sockets_are_left_alone() -> None:
    never = KeepAliveLimit(_app, limit=0)
    assert all((b"connection", b"close") not in _headers(never, ("h", 1)) for _ in range(50))
    once = KeepAliveLimit(_app, limit=1)
    assert (b"connection", b"close") in _headers(once, ("h", 1))
    assert (b"connection", b"close") not in _headers(once, None)


def test_the_count_table_is_bounded() -> None:
    mw = KeepAliveLimit(_app, limit=5, tracked=10)
    for port in range(100):
        _headers(mw, ("h", port))
    assert len(mw._counts) == 10
