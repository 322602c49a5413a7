"""KeepAliveLimit: about one call in ``limit`` is answered with ``Connection: close``."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from nluserve.api.middleware import KeepAliveLimit

CLOSE = (b"connection", b"close")


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-a", b"1"), (b"connection", b"keep-alive")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _headers(
    mw: KeepAliveLimit, client: tuple[str, int] | None = ("10.0.0.1", 4000)
) -> list[tuple[bytes, bytes]]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "client": client, "method": "GET", "path": "/"}
    asyncio.run(mw(scope, receive, send))
    assert sent[1]["body"] == b"ok"
    return list(sent[0]["headers"])


def test_one_call_in_limit_closes_on_average() -> None:
    mw = KeepAliveLimit(_app, limit=20)
    closes = sum(CLOSE in _headers(mw) for _ in range(4000))
    assert 120 <= closes <= 280  # 200 expected; sd 14


def test_limit_one_always_closes_and_replaces_the_apps_own_header() -> None:
    mw = KeepAliveLimit(_app, limit=1)
    for _ in range(20):
        headers = _headers(mw)
        assert CLOSE in headers and (b"connection", b"keep-alive") not in headers
        assert (b"x-a", b"1") in headers


def test_zero_never_closes() -> None:
    mw = KeepAliveLimit(_app, limit=0)
    assert all(CLOSE not in _headers(mw, client) for client in [("h", 1), None] * 200)


def test_a_worker_due_for_recycling_closes_every_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped: list[str] = []
    monkeypatch.setattr(KeepAliveLimit, "recycle_after", 3)
    monkeypatch.setattr(KeepAliveLimit, "DRAIN_S", 3600.0)  # the SIGTERM that would follow
    monkeypatch.setattr(KeepAliveLimit, "on_drain", lambda: stopped.append("accepting"))
    mw = KeepAliveLimit(_app, limit=0)
    closes = [CLOSE in _headers(mw) for _ in range(6)]
    assert closes == [False, False, True, True, True, True]
    assert stopped == ["accepting"]  # once
