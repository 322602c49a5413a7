"""Below the app: bytes that are not HTTP get a problem+json 400 from the real uvicorn server,
and the documentation routes are counted under their own names in the metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.server_process import Server, start_server, wait_ready
from tests.support.serving import metric

pytestmark = pytest.mark.slow
CLIENT_TIMEOUT_S = 1.0

MALFORMED = [
    b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # TLS spoken to plain HTTP
    b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
]


@pytest.fixture(scope="module")
def server(tiny_ner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(
        tmp_path_factory.mktemp("one-worker"),
        ["--workers", "1", "--models", str(tiny_ner_dir)],
        {"NLUSERVE_CLIENT_TIMEOUT_S": str(CLIENT_TIMEOUT_S)},
    )
    try:
        wait_ready(srv)
        yield srv
    finally:
        if srv.proc.poll() is None:
            os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=30)


def raw_exchange(url: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection; everything the server answers until it closes."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def assert_malformed_problem(
    answer: bytes, status: int = 400, slug: str = "malformed-http"
) -> dict[str, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith(f"HTTP/1.1 {status}"), answer[:200]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/problem+json"
    assert int(headers["content-length"]) == len(body)
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["type"].endswith("/" + slug)
    assert problem["title"] and problem["detail"]
    return headers


HALF_HEADERS = b"POST /v1/ner HTTP/1.1\r\nHost: x\r\n"
HALF_BODY = (
    b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100\r\n\r\n{"text": '
)


@pytest.mark.parametrize("data", [b"", HALF_HEADERS], ids=["nothing", "half-headers"])
def test_a_client_that_does_not_finish_its_headers_gets_a_408(server: Server, data: bytes) -> None:
    # Without it such connections stay open forever (slowloris); uvicorn has no such timeout.
    started = time.monotonic()
    assert_malformed_problem(raw_exchange(server.url, data), 408, "request-timeout")
    assert CLIENT_TIMEOUT_S <= time.monotonic() - started < CLIENT_TIMEOUT_S + 5


def test_headers_over_64_kib_are_431_and_under_it_are_served(server: Server) -> None:
    def request(kib: int) -> bytes:
        lines = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"v" * 1000) for i in range(kib))
        return b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + lines + b"\r\n"

    assert_malformed_problem(raw_exchange(server.url, request(100)), 431, "headers-too-large")
    assert raw_exchange(server.url, request(30)).startswith(b"HTTP/1.1 200")


def test_a_body_that_stalls_gets_a_408_with_its_request_id(server: Server) -> None:
    headers = assert_malformed_problem(raw_exchange(server.url, HALF_BODY), 408, "request-timeout")
    assert headers["x-request-id"]


def test_a_client_gone_mid_body_is_logged_as_499_not_as_a_malformed_body(server: Server) -> None:
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(HALF_BODY.replace(b"Host: x", b"Host: x\r\nX-Request-ID: gone-mid-body"))
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "gone-mid-body" not in server.output():
        time.sleep(0.1)
    [line] = [json.loads(x) for x in server.output().splitlines() if "gone-mid-body" in x]
    assert line["route"] == "/v1/ner" and line["status"] == 499, line


@pytest.mark.parametrize("data", MALFORMED, ids=["header", "tls", "chunk"])
def test_bytes_that_are_not_http_get_a_problem(server: Server, data: bytes) -> None:
    assert_malformed_problem(raw_exchange(server.url, data))
    assert httpx.get(server.url + "/healthz").status_code == 200  # and the server carries on


def test_documentation_routes_are_counted_by_name(server: Server) -> None:
    for path in ("/docs", "/openapi.json", "/no-such-page"):
        httpx.get(server.url + path)
    exposition = httpx.get(server.url + "/metrics").text
    requests = "nluserve_http_requests_total"
    assert metric(exposition, requests, {"route": "/docs", "status": "200"}) == 1
    assert metric(exposition, requests, {"route": "/openapi.json", "status": "200"}) == 1
    # A path no route serves still has one bounded label, never the raw path.
    assert metric(exposition, requests, {"route": "unmatched", "status": "404"}) == 1
    assert metric(exposition, requests, {"route": "/no-such-page"}) == 0
