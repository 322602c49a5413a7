"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware): request ids, access log, the request
body's guard, keep-alive request limit."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
import random
import re
import signal
import time
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nluserve.api.problems import MEDIA_TYPE, TYPE_BASE
from nluserve.observability import metrics
from nluserve.observability.logging import request_id_var

access_log = logging.getLogger("nluserve.access")
error_log = logging.getLogger("nluserve.http")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Request ids need to be unique, not secret: 128 bits from the process's PRNG (reseeded after
# fork by the random module) instead of uuid4, whose os.urandom is a syscall that hands the GIL
# to the inference thread and waits to get it back, on every request.
_random_bits = random.getrandbits
_random = random.random


class RequestContext:
    """Takes X-Request-ID (if well-formed) or makes one; echoes it; logs one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Bounded like the labels themselves: route templates x methods x statuses.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        rid = given if given and _SAFE_ID.match(given) else f"{_random_bits(128):032x}"
        scope.setdefault("state", {})["request_id"] = rid
        method = scope["method"]
        if method == "HEAD":
            # HEAD wherever GET is (RFC 9110 9.3.2; load balancers and uptime monitors probe
            # with it): FastAPI's routes take GET alone, so the app sees a GET, and its body
            # is dropped below (the GET's Content-Length stays, as HEAD promises).
            scope = {**scope, "method": "GET"}
        token = request_id_var.set(rid)
        started = time.perf_counter()
        status = 500
        counted = responded = False

        def count() -> float:
            nonlocal counted
            counted = True
            elapsed = time.perf_counter() - started
            requests, latency = self._metrics(_route(scope), method, status)
            requests.inc()
            latency.observe(elapsed)
            return elapsed

        async def send_with_id(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.body":
                if method == "HEAD":
                    message = {**message, "body": b""}
                if not message.get("more_body", False):
                    # Counted before the last byte leaves: a client that has its answer and
                    # then reads /metrics must find its call there.
                    count()
            elif message["type"] == "http.response.start":
                status, responded = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                existing = {k.lower() for k, _ in headers}
                for name, value in scope.get("state", {}).get("ratelimit_headers", {}).items():
                    if name.lower().encode() not in existing:
                        headers.append((name.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if responded:
                raise
            # Answered here, not by Starlette's outermost error handler: that one runs after
            # this middleware has let go of the request, so its 500 would carry no
            # X-Request-ID and its traceback no request id to match the client's report by.
            error_log.exception("unhandled error", extra={"fields": {"route": _route(scope)}})
            await _send_problem(
                scope,
                send_with_id,
                500,
                "internal",
                "Internal server error",
                "an unexpected error; it has been logged with this request id",
            )
        finally:
            elapsed = time.perf_counter() - started if counted else count()
            route = _route(scope)
            if access_log.isEnabledFor(logging.INFO):
                # Never the body, never the query string: request text must not reach the logs.
                fields = {
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "client": _client(scope),
                    "tenant": scope.get("state", {}).get("tenant_name"),
                }
                # makeRecord + handle is Logger.info without its stack walk for the caller's
                # file and line, which is always this spot.
                access_log.handle(
                    access_log.makeRecord(
                        access_log.name,
                        logging.INFO,
                        __file__,
                        0,
                        "%s %s %s",
                        (method, route, status),
                        None,
                        extra={"fields": fields},
                    )
                )
            request_id_var.reset(token)

    def _metrics(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram children (labels() is a locked lookup)."""
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            found = (
                metrics.REQUESTS.labels(route, method, str(status)),
                metrics.LATENCY.labels(route, method),
            )
            self._children[key] = found
        return found


# Bytes that UTF-8 JSON never holds: NUL (JSON escapes control characters, and UTF-16 or
# UTF-32 text, which the stdlib json module would decode by guessing, has NULs in every
# ASCII character), and UTF-8-encoded surrogates (0xED 0xA0-0xBF), which json decodes with
# "surrogatepass" and would hand on as text.
_NOT_UTF8_JSON = re.compile(rb"\x00|\xed[\xa0-\xbf]")


class BodyGuard:
    """The request body before any route reads it: over the limit (413, by Content-Length or
    while streaming), in a content coding (415), bytes that are not UTF-8 JSON (400), a client
    that stops sending it (408 after ``read_timeout_s`` between two parts), or one that goes
    away before it is complete (logged as 499, not as a malformed body)."""

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout_s: float = 20.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, send)
            return
        coding = _header(scope, b"content-encoding")
        if coding and coding.strip().lower() != "identity":
            await _send_problem(
                scope,
                send,
                415,
                "unsupported-media-type",
                "Unsupported content encoding",
                f"request bodies are read as sent: Content-Encoding {coding[:40]!r} is not "
                "supported",
                [(b"accept-encoding", b"identity")],
            )
            return
        seen = 0
        complete = rejected = False
        last = b""  # the previous part's last byte: a surrogate may straddle two parts

        async def guarded() -> Message:
            nonlocal seen, complete, rejected, last
            if rejected:
                return {"type": "http.disconnect"}
            if complete:  # after the body only a disconnect comes, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout(self.read_timeout_s):
                    message = await receive()
            except TimeoutError:
                rejected = True
                await _send_problem(
                    scope,
                    send,
                    408,
                    "request-timeout",
                    "Request timeout",
                    f"the request body stalled for {self.read_timeout_s:g} s",
                )
                return {"type": "http.disconnect"}
            if message["type"] == "http.disconnect":
                # The client left mid-body: nobody reads the answer, the access log does.
                rejected = True
                await send({"type": "http.response.start", "status": 499, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return message
            if message["type"] == "http.request":
                part = message.get("body", b"")
                seen += len(part)
                complete = not message.get("more_body", False)
                if seen > self.max_bytes:
                    # Answer now; the app sees a disconnect and whatever it sends is dropped.
                    rejected = True
                    await self._too_large(scope, send)
                    return {"type": "http.disconnect"}
                if _NOT_UTF8_JSON.search(last + part if last else part):
                    rejected = True
                    await _send_problem(
                        scope,
                        send,
                        400,
                        "malformed-json",
                        "Malformed JSON body",
                        "the body is not valid UTF-8 JSON",
                    )
                    return {"type": "http.disconnect"}
                last = part[-1:]
            return message

        async def guarded_send(message: Message) -> None:
            if not rejected:
                await send(message)

        try:
            await self.app(scope, guarded, guarded_send)
        except Exception:
            if not rejected:
                raise

    async def _too_large(self, scope: Scope, send: Send) -> None:
        await _send_problem(
            scope,
            send,
            413,
            "payload-too-large",
            "Payload too large",
            f"the request body exceeds {self.max_bytes} bytes",
        )


class KeepAliveLimit:
    """Closes a client's connection after about ``limit`` requests, as nginx's
    ``keepalive_requests``; and, in a gunicorn worker due for recycling, every connection before
    the worker goes.

    A client that keeps its connections (a pool, a proxy's upstream keep-alive) stays on the
    worker that accepted them. When gunicorn recycled a worker (max_requests) its clients
    reconnected at once to the workers still accepting, and the new worker got nothing: with
    two workers under wrk at 32 connections, all 32 ended on one worker and throughput fell
    from about 1,600 to 960 calls/s. Closing every connection now and then lets the accepts
    spread them again. uvicorn has no such setting; a ``Connection: close`` response header
    makes it close the connection once that response is sent.

    Recycling itself: uvicorn's own max-requests stop closes idle keep-alive connections at
    once, and a request a client is sending on one at that moment gets a connection reset (a
    502 for a POST behind a proxy, which may not retry it). Instead, from the worker's
    ``recycle_after``-th request on (set by ``nluserve.server.worker`` after the fork), every
    answer says ``Connection: close`` for ``DRAIN_S`` seconds while the worker accepts no new
    connections (``on_drain``), so busy clients move to the other workers with no request
    lost; then the worker stops as on SIGTERM (graceful) and gunicorn starts its replacement.
    """

    recycle_after: int | None = None
    on_drain: Callable[[], None] | None = None  # the worker's: stop accepting connections
    may_drain: Callable[[], bool] | None = None  # the worker's: no other worker is draining
    DRAIN_S = 2.0

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self._served = 0
        self._draining = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self._served += 1
        if (
            self.recycle_after
            and self._served >= self.recycle_after
            and not self._draining
            and self._may_drain(self._served - self.recycle_after)
        ):
            self._draining = True
            error_log.info("worker recycles after %d requests", self._served)
            stop_accepting = KeepAliveLimit.on_drain  # through the class: not a bound method
            if stop_accepting is not None:
                stop_accepting()
            asyncio.get_running_loop().call_later(
                self.DRAIN_S, os.kill, os.getpid(), signal.SIGTERM
            )
        # Each call closes its connection with probability 1/limit: ``limit`` calls per
        # connection on average. Not a count per connection: the ASGI scope names no
        # connection, and behind a trusted proxy its client is the forwarded address.
        if not self._draining and not (self.limit and _random() * self.limit < 1):
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)

    def _may_drain(self, over: int) -> bool:
        allowed = KeepAliveLimit.may_drain  # through the class: not a bound method
        if allowed is None:
            return True
        return over % 100 == 0 and allowed()  # asked again every 100 calls while another drains


async def _send_problem(
    scope: Scope,
    send: Send,
    status: int,
    slug: str,
    title: str,
    detail: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A problem+json answer sent from middleware, outside FastAPI's handlers; closes."""
    body = json.dumps(
        {
            "type": TYPE_BASE + slug,
            "title": title,
            "status": status,
            "detail": detail,
            "instance": scope.get("path"),
            "request_id": scope.get("state", {}).get("request_id"),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *(headers or ()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _route(scope: Scope) -> str:
    """The route template (bounded label cardinality), not the raw path."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    # Starlette's own routes (FastAPI's /docs, /openapi.json) name their endpoint, not
    # themselves, in the scope.
    endpoint = scope.get("endpoint")
    if endpoint is not None:
        for candidate in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
            if getattr(candidate, "endpoint", None) is endpoint:
                return str(candidate.path)
    return "unmatched"


def _client(scope: Scope) -> str | None:
    """The client's address; "unknown" for anything else a trusted proxy's X-Forwarded-For
    said (uvicorn takes its last entry as it is, and the access log must not echo it)."""
    client = scope.get("client")
    if not client:
        return None
    try:
        return str(ipaddress.ip_address(str(client[0])))
    except ValueError:
        return "unknown"
