"""Overload (503 + Retry-After), deadlines (504, never run) and clients that go away."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.types import Message

from tests.support.serving import assert_problem, build_app, general, metric, serving
from tests.support.slow import SlowBackend, slow_model


async def _wait_idle(app: FastAPI, backend: SlowBackend, settle: float = 0.1) -> None:
    """Until the batcher has nothing queued and the backend saw no new batch for ``settle`` s."""
    batcher = app.state.inference.batchers["general"]
    end = time.monotonic() + 10
    seen = -1
    while time.monotonic() < end:
        if batcher.depth == 0 and len(backend.batches) == seen:
            return
        seen = len(backend.batches)
        await asyncio.sleep(settle)
    raise AssertionError("the batcher did not go idle")


def test_a_full_queue_answers_503_with_retry_after_and_runs_nothing_it_refused() -> None:
    gate = threading.Event()
    model, backend = slow_model(general(), gate=gate)
    app = build_app([model], max_queue_chars=20)

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response], str, str]:
        async with serving(app) as client:
            before = (await client.get("/metrics")).text
            try:
                running = asyncio.ensure_future(client.post("/v1/ner", json={"text": "张三在跑"}))
                assert await asyncio.to_thread(backend.started.wait, 10)
                # The queue takes one call whatever its size, then refuses what would overfill it.
                queued = asyncio.ensure_future(client.post("/v1/ner", json={"text": "李四" * 8}))
                while app.state.inference.batchers["general"].depth < 1:
                    await asyncio.sleep(0.01)
                refused = [
                    await client.post("/v1/ner", json={"text": f"王五被拒绝{i}"}) for i in range(3)
                ]
            finally:
                gate.set()
            accepted = [await running, await queued]
            await _wait_idle(app, backend)
            after = (await client.get("/metrics")).text
        return accepted, refused, before, after

    accepted, refused, before, after = asyncio.run(scenario())
    assert [r.status_code for r in accepted] == [200, 200]
    for response in refused:
        body = assert_problem(response, 503)
        assert body["type"].endswith("/overloaded")
        assert int(response.headers["retry-after"]) >= 1
        assert body["request_id"] == response.headers["x-request-id"]
    assert not backend.saw("被拒绝")
    rejected = {"reason": "overloaded"}
    assert metric(after, "nluserve_rejected_total", rejected) - metric(
        before, "nluserve_rejected_total", rejected
    ) == len(refused)


def test_a_call_queued_past_its_deadline_gets_504_and_never_runs() -> None:
    gate = threading.Event()
    model, backend = slow_model(general(), gate=gate)
    app = build_app([model], request_timeout_s=0.3)

    async def scenario() -> tuple[httpx.Response, httpx.Response]:
        async with serving(app) as client:
            try:
                running = asyncio.ensure_future(client.post("/v1/ner", json={"text": "张三在跑"}))
                assert await asyncio.to_thread(backend.started.wait, 10)
                started = time.monotonic()
                expired = await client.post("/v1/ner", json={"text": "李四过期了"})
                waited = time.monotonic() - started
                assert waited < 5, waited
            finally:
                gate.set()
            await running  # ran past its own deadline: its answer is not pinned here
            await _wait_idle(app, backend)
            later = await client.post("/v1/ner", json={"text": "王五来晚了"})
            assert later.status_code == 200, later.text
        return expired, later

    expired, _ = asyncio.run(scenario())
    body = assert_problem(expired, 504)
    assert body["type"].endswith("/deadline-exceeded")
    assert not backend.saw("过期")
    assert backend.saw("来晚")


def _scope(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }


class _Leaving:
    """An ASGI client that sends its body, then hangs up when told to."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent_body = False
        self.gone = asyncio.Event()
        self.messages: list[Message] = []

    async def receive(self) -> Message:
        if not self.sent_body:
            self.sent_body = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.messages.append(message)


async def _disconnect_while_queued(
    app: FastAPI, backend: SlowBackend, gate: threading.Event, text: str
) -> tuple[BaseException | None, _Leaving, str, str]:
    """Queue ``text`` behind a held batch, hang up, then let the batch finish."""
    async with serving(app) as client:
        before = (await client.get("/metrics")).text
        client_gone = _Leaving(json.dumps({"text": text}).encode())
        error: BaseException | None = None
        try:
            running = asyncio.ensure_future(client.post("/v1/ner", json={"text": "张三在跑"}))
            assert await asyncio.to_thread(backend.started.wait, 10)
            call = asyncio.ensure_future(
                app(_scope("/v1/ner", client_gone.body), client_gone.receive, client_gone.send)
            )
            while app.state.inference.batchers["general"].depth < 1:
                await asyncio.sleep(0.01)
            client_gone.gone.set()
            try:
                await asyncio.wait_for(call, timeout=10)
            except Exception as exc:
                error = exc
        finally:
            gate.set()
        assert (await running).status_code == 200
        await _wait_idle(app, backend)
        after = (await client.get("/metrics")).text
    return error, client_gone, before, after


def test_a_client_that_disconnects_while_queued_is_dropped_before_inference() -> None:
    gate = threading.Event()
    model, backend = slow_model(general(), gate=gate)
    app = build_app([model])

    _, _, before, after = asyncio.run(_disconnect_while_queued(app, backend, gate, "李四走了"))

    assert not backend.saw("走了")
    gone = {"reason": "disconnected"}
    assert (
        metric(after, "nluserve_rejected_total", gone)
        - metric(before, "nluserve_rejected_total", gone)
        == 1
    )


def test_a_disconnected_call_ends_quietly_not_as_a_server_error() -> None:
    gate = threading.Event()
    model, backend = slow_model(general(), gate=gate)
    app = build_app([model])

    error, client_gone, before, after = asyncio.run(
        _disconnect_while_queued(app, backend, gate, "李四走了")
    )

    assert error is None, f"the app raised {error!r} for a client that went away"
    statuses = [m["status"] for m in client_gone.messages if m["type"] == "http.response.start"]
    assert all(s < 500 for s in statuses), statuses
    errors = {"route": "/v1/ner", "status": "500"}
    assert metric(after, "nluserve_http_requests_total", errors) == metric(
        before, "nluserve_http_requests_total", errors
    )


def test_stopping_finishes_queued_calls_and_refuses_new_ones_with_503() -> None:
    gate = threading.Event()
    model, backend = slow_model(general(), gate=gate)
    app = build_app([model])

    async def scenario() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            lifespan = app.router.lifespan_context(app)
            await lifespan.__aenter__()
            try:
                running = asyncio.ensure_future(client.post("/v1/ner", json={"text": "张三在跑"}))
                assert await asyncio.to_thread(backend.started.wait, 10)
                queued = asyncio.ensure_future(client.post("/v1/ner", json={"text": "李四在排队"}))
                while app.state.inference.batchers["general"].depth < 1:
                    await asyncio.sleep(0.01)
                stopping = asyncio.ensure_future(lifespan.__aexit__(None, None, None))
                await asyncio.sleep(0.05)
                late = await client.post("/v1/ner", json={"text": "王五来晚了"})
            finally:
                gate.set()
            await stopping
            return [await running, await queued, late]

    running, queued, late = asyncio.run(scenario())
    assert running.status_code == queued.status_code == 200
    assert queued.json()["results"][0]["entities"][0]["text"] == "李四"
    body = assert_problem(late, 503)
    assert body["type"].endswith("/shutting-down")
    assert late.headers["retry-after"] == "1"
    assert not backend.saw("来晚")
