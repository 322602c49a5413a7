"""Closed-loop load through nginx: each client sends its next call when the last one is answered.

Clients never retry: a failed call is recorded as it happened (the HTTP status, or the
transport error when there was no answer at all), with the request id nginx gave it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from tests.integration.deploy.e2e.stack import bearer

TEXT = "张三在北京大学读书。"


@dataclass(frozen=True)
class Call:
    method: str
    status: int  # 0: no HTTP answer (connection error)
    request_id: str | None
    started: float
    ended: float
    error: str = ""  # the transport error, or the body of an answer other than 200


@dataclass
class Load:
    """Concurrent GET /v1/models and POST /v1/ner loops until :meth:`stop`."""

    client: httpx.AsyncClient
    credential: str
    pause: float = 0.0  # seconds each client waits between calls (less CPU for the servers)
    calls: list[Call] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, posts: int, gets: int = 0) -> None:
        for _ in range(posts):
            self._tasks.append(asyncio.create_task(self._loop("POST")))
        for _ in range(gets):
            self._tasks.append(asyncio.create_task(self._loop("GET")))

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _loop(self, method: str) -> None:
        headers = bearer(self.credential)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                if method == "POST":
                    r = await self.client.post("/v1/ner", json={"text": TEXT}, headers=headers)
                else:
                    r = await self.client.get("/v1/models", headers=headers)
            except httpx.TransportError as exc:
                self.calls.append(Call(method, 0, None, started, time.monotonic(), repr(exc)))
                continue
            rid = r.headers.get("x-request-id")
            detail = "" if r.status_code == 200 else r.text[:300]
            self.calls.append(Call(method, r.status_code, rid, started, time.monotonic(), detail))

    def of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def ok_ids(self, method: str = "POST") -> set[str]:
        return {c.request_id for c in self.of(method) if c.status == 200 and c.request_id}

    def failed(self, method: str) -> list[Call]:
        return [c for c in self.of(method) if c.status != 200]

    def statuses(self, method: str) -> Counter[int]:
        return Counter(c.status for c in self.of(method))

    def in_flight_at(self, moment: float, method: str) -> int:
        """Calls of ``method`` that had started and not yet ended at ``moment``."""
        return sum(c.started <= moment <= c.ended for c in self.of(method))
