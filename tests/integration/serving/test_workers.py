"""The real server: gunicorn with two workers, metrics summed across them, SIGTERM drains.

Starting the server costs tens of seconds on a loaded 2-core machine, so both tests share one
(module scope); the SIGTERM test stops it and therefore comes last in this file.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict

from tests.integration.serving.test_protocol import (
    MALFORMED,
    assert_malformed_problem,
    raw_exchange,
)
from tests.support.server_process import Server, start_server, wait_ready
from tests.support.serving import metric

pytestmark = pytest.mark.slow

PREDICT = "/v1/models/{name}/predict"
STARTUP_S = 60.0
GRACEFUL_S = 20
KEEPALIVE_REQUESTS = 1  # every answer closes its connection: see the test below
MAX_REQUESTS = 60  # low, so that the tests here see workers recycled


@pytest.fixture(scope="module")
def server(tiny_ner_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp_path = tmp_path_factory.mktemp("server")
    srv = start_server(
        tmp_path,
        ["--workers", "2", "--models", str(tiny_ner_dir)],
        {
            "NLUSERVE_GRACEFUL_TIMEOUT_S": str(GRACEFUL_S),
            "NLUSERVE_KEEPALIVE_REQUESTS": str(KEEPALIVE_REQUESTS),
            "NLUSERVE_MAX_REQUESTS": str(MAX_REQUESTS),
        },
    )
    try:
        wait_ready(srv, STARTUP_S)
        yield srv
    finally:
        if srv.proc.poll() is None:
            os.killpg(srv.proc.pid, signal.SIGKILL)
        srv.proc.wait(timeout=30)


def _predict(url: str, body: dict[str, object], timeout: float = 60) -> httpx.Response:
    # A fresh connection per call, so the kernel may hand each to either worker.
    with httpx.Client(base_url=url, timeout=timeout) as client:
        return client.post("/v1/models/tiny/predict", json=body)


def _served_by(data_dir: Path) -> dict[str, float]:
    """Successful predict calls per worker pid, read from each worker's own metrics file."""
    counts: dict[str, float] = {}
    for path in (data_dir / "prometheus").glob("counter_*.db"):
        pid = path.stem.split("_", 1)[1]
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            metric_name, _, labels, _ = json.loads(key)
            if (
                metric_name == "nluserve_http_requests"
                and labels.get("route") == PREDICT
                and labels.get("status") == "200"
            ):
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


def test_metrics_add_up_across_both_workers(server: Server) -> None:
    sent = 0
    with ThreadPoolExecutor(8) as pool:
        # Bounded: keep sending until both workers have answered some (almost always round 1).
        for round_ in range(5):
            bodies = [{"texts": [f"张三在北京大学读书{round_}-{i}。"] * 4} for i in range(20)]
            responses = list(pool.map(lambda b: _predict(server.url, b), bodies))
            assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
            sent += len(bodies)
            if len(_served_by(server.data_dir)) >= 2:
                break
    per_worker = _served_by(server.data_dir)
    assert len(per_worker) == 2, per_worker
    assert sum(per_worker.values()) == sent

    labels = {"route": PREDICT, "method": "POST", "status": "200"}
    for _ in range(6):  # each scrape may land on either worker: every one must see all calls
        with httpx.Client(base_url=server.url, timeout=10) as client:
            scraped = client.get("/metrics")
        assert scraped.status_code == 200
        assert metric(scraped.text, "nluserve_http_requests_total", labels) == sent
        assert metric(scraped.text, "nluserve_batch_size_texts_sum", {"model": "tiny"}) >= sent * 4


def test_a_connection_is_closed_when_the_keepalive_limit_says_so(server: Server) -> None:
    # The middleware's odds are unit-tested; here: gunicorn's uvicorn workers do close it.
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200
            response.read()
            assert response.getheader("connection") == "close"
            assert conn.sock is None  # closed; http.client reconnects for the next call
    finally:
        conn.close()


def test_gunicorn_workers_answer_bytes_that_are_not_http_with_a_problem(server: Server) -> None:
    # The uvicorn workers get nluserve's protocol class from gunicorn's worker class.
    for data in MALFORMED:
        assert_malformed_problem(raw_exchange(server.url, data))


def test_recycled_workers_exit_cleanly_and_are_replaced(server: Server) -> None:
    def booted() -> int:
        return server.log.read_text(encoding="utf-8", errors="replace").count("Booting worker")

    def healthz_count() -> float:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            exposition = client.get("/metrics").text
        return metric(exposition, "nluserve_http_requests_total", {"route": "/healthz"})

    before = healthz_count()
    sent = 0
    end = time.monotonic() + 60
    with httpx.Client(base_url=server.url, timeout=30) as client:
        while booted() < 4 and time.monotonic() < end:
            for _ in range(MAX_REQUESTS):
                assert client.get("/healthz").status_code == 200
                sent += 1
    assert booted() >= 4, server.output()
    time.sleep(1)  # the last recycled worker's exit reaches the log
    log = server.log.read_text(encoding="utf-8", errors="replace")
    # The dead workers' counts stay in /metrics, folded into one archive file, not a file each.
    assert healthz_count() - before == sent
    per_process = [p for p in (server.data_dir / "prometheus").glob("counter_*.db")]
    assert (server.data_dir / "prometheus" / "counter_archive.db") in per_process
    assert len(per_process) <= 4, per_process  # the archive, two live workers, the master
    # A worker that dies on its way out (onnxruntime's telemetry thread, lost in the fork: see
    # nluserve/__init__) is reported by gunicorn, which still replaces it.
    assert "SIGABRT" not in log and "terminate called" not in log, server.output()
    # One worker drains at a time (two together would leave nobody accepting).
    starts = [
        datetime.fromisoformat(json.loads(line)["ts"].replace("Z", "+00:00")).timestamp()
        for line in log.splitlines()
        if "worker recycles after" in line
    ]
    assert len(starts) >= 2, server.output()
    assert all(b - a >= 1.9 for a, b in itertools.pairwise(starts)), starts
    # The master's own lines are JSON on the same stream, not gunicorn's plain text.
    boots = [line for line in log.splitlines() if "Booting worker" in line]
    assert boots and all(json.loads(x)["logger"] == "gunicorn.error" for x in boots), boots[:2]


def _timed(url: str, body: dict[str, object]) -> float:
    started = time.monotonic()
    assert _predict(url, body).status_code == 200
    return time.monotonic() - started


def test_sigterm_lets_in_flight_calls_finish_then_exits_cleanly(server: Server) -> None:
    text = ("张三在北京大学读书，李四去了上海。" * 20)[:200]
    # Calls must still be running when the signal comes, on a fast machine or a loaded one:
    # size them from one measured call to take about two seconds each.
    per_text = max(_timed(server.url, {"texts": [text]}), 0.01)
    heavy = {"texts": [text] * max(1, min(64, math.ceil(2.0 / per_text)))}
    # Connections are opened (and a first call answered) up front: opening one is slow on a
    # loaded machine, and one still opening when the signal comes is refused, as it should be.
    clients = [httpx.Client(base_url=server.url, timeout=60) for _ in range(4)]
    try:
        for client in clients:
            assert client.get("/healthz").status_code == 200
        with ThreadPoolExecutor(4) as pool:
            in_flight = [
                pool.submit(client.post, "/v1/models/tiny/predict", json=heavy)
                for client in clients
            ]
            time.sleep(0.5)  # let the workers read them
            assert not any(f.done() for f in in_flight), "calls finished before SIGTERM"
            server.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            time.sleep(0.5)
            with pytest.raises(httpx.ConnectError):
                httpx.get(server.url + "/healthz", timeout=2)
            refused_while_draining = not all(f.done() for f in in_flight)
            answers = [f.result(timeout=GRACEFUL_S + 30) for f in in_flight]
    finally:
        for client in clients:
            client.close()

    assert refused_while_draining
    for response in answers:
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == len(heavy["texts"])
    code = server.proc.wait(timeout=GRACEFUL_S + 30)
    assert code == 0, server.output()
    assert time.monotonic() - signalled < GRACEFUL_S
    # Each worker must exit by itself: gunicorn still exits 0 when a worker dies of SIGABRT
    # on its way out (onnxruntime's telemetry thread, lost in the fork; see nluserve/__init__).
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "SIGABRT" not in log and "terminate called" not in log, server.output()
    assert "SIGKILL" not in log, server.output()
