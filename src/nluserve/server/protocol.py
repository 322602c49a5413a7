"""uvicorn's HTTP protocol, answering a request it cannot parse, or whose headers do not arrive
in time, with problem+json.

uvicorn answers bytes that are not HTTP (a bad request line, a broken header, a bad chunk
size) itself, before any ASGI app sees them, with a ``text/plain`` 400. Every other error
this service gives is RFC 9457 ``application/problem+json``, and clients parse it as such.
uvicorn has no hook for that body, so the one method that writes it is replaced here;
``tests/integration/serving/test_protocol.py`` notices if a uvicorn upgrade renames it.
"""

from __future__ import annotations

import json
from importlib.util import find_spec

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from nluserve.api.problems import MEDIA_TYPE, TYPE_BASE

MAX_HEADER_BYTES = 65_536  # request line and headers; nginx's default buffers hold 32 KiB


def problem_body(
    message: str,
    status: int = 400,
    slug: str = "malformed-http",
    title: str = "Malformed HTTP request",
) -> bytes:
    """The problem for bytes that are not a well-formed HTTP request (or not one in time)."""
    return json.dumps(
        {"type": TYPE_BASE + slug, "title": title, "status": status, "detail": message}
    ).encode()


class ProblemH11Protocol(H11Protocol):
    def send_400_response(self, msg: str) -> None:
        body = problem_body(msg)
        headers = [
            (b"content-type", MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        for event in (
            h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def _httptools(header_timeout_s: float) -> type:
    import asyncio

    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        """Also answers 408 to a client that does not finish a request's headers in time.

        uvicorn has no such timeout (its keep-alive timer only closes connections idle between
        requests), so a client that opens a connection and sends a header line every minute,
        or nothing at all, holds it forever: enough of them exhaust the file descriptors
        (slowloris). nginx's ``client_header_timeout`` is the model; the body has its own in
        ``api/middleware.py``.
        """

        _header_timer: asyncio.TimerHandle | None = None
        _header_bytes = 0
        _headers_too_large = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_timer()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._header_bytes = 0
            self._arm_header_timer()

        # httptools itself bounds neither the headers nor their number: without this a client
        # could stream header lines into memory until the timeout.
        def on_url(self, url: bytes) -> None:
            self._count_header_bytes(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_header_bytes(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count_header_bytes(self, n: int) -> None:
            self._header_bytes += n
            if self._header_bytes > MAX_HEADER_BYTES:
                self._headers_too_large = True
                # Stops the parser; uvicorn answers a parser error with send_400_response.
                raise ValueError("request headers too large")

        def on_headers_complete(self) -> None:
            self._cancel_header_timer()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._headers_late)

        def _cancel_header_timer(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                # A request on this connection is still being answered (pipelining): the
                # answer goes first, and the next request's headers get another period.
                self._arm_header_timer()
                return
            self._write_problem(
                408,
                "request-timeout",
                "Request timeout",
                f"the request headers did not arrive within {header_timeout_s:g} s",
            )

        def send_400_response(self, msg: str) -> None:
            if self._headers_too_large:
                self._write_problem(
                    431,
                    "headers-too-large",
                    "Request header fields too large",
                    f"the request line and headers exceed {MAX_HEADER_BYTES} bytes",
                )
                return
            self._write_problem(400, "malformed-http", "Malformed HTTP request", msg)

        def _write_problem(self, status: int, slug: str, title: str, msg: str) -> None:
            body = problem_body(msg, status, slug, title)
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: " + MEDIA_TYPE.encode() + b"\r\n",
                    b"content-length: " + str(len(body)).encode() + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
            self.transport.close()

    return ProblemHttpToolsProtocol


def http_protocol(header_timeout_s: float = 20.0) -> type:
    """The protocol class for uvicorn's ``http`` option: httptools where installed, as
    uvicorn's "auto" picks, else h11 (which keeps uvicorn's lack of a header timeout)."""
    return _httptools(header_timeout_s) if find_spec("httptools") else ProblemH11Protocol
