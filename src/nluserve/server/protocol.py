"""uvicorn's HTTP protocol, answering a request it cannot parse with problem+json.

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


def problem_body(message: str) -> bytes:
    """The 400 problem for bytes that are not a well-formed HTTP request."""
    return json.dumps(
        {
            "type": TYPE_BASE + "malformed-http",
            "title": "Malformed HTTP request",
            "status": 400,
            "detail": message,
        }
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


def _httptools() -> type[H11Protocol] | type:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        def send_400_response(self, msg: str) -> None:
            body = problem_body(msg)
            content = [STATUS_LINE[400]]
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


def http_protocol() -> type:
    """The protocol class for uvicorn's ``http`` option: httptools where installed, as
    uvicorn's "auto" picks, else h11."""
    return _httptools() if find_spec("httptools") else ProblemH11Protocol
