"""SIGTERM with more work than the graceful timeout lets finish: every caller still gets an
answer, its result or 503 shutting-down as problem+json. Before, one uvicorn worker answered
the calls it cancelled with a plain-text 500, and gunicorn's master killed its workers with
the calls unanswered (its graceful timeout was the workers' own)."""

from __future__ import annotations

import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.server_process import start_server, wait_ready

pytestmark = pytest.mark.slow

GRACEFUL_S = 3


@pytest.mark.parametrize("workers", [1, 2], ids=["uvicorn", "gunicorn"])
def test_calls_the_graceful_timeout_cuts_off_are_answered_503(
    tiny_ner_dir: Path, tmp_path: Path, workers: int
) -> None:
    srv = start_server(
        tmp_path,
        ["--workers", str(workers), "--models", str(tiny_ner_dir)],
        {"NLUSERVE_GRACEFUL_TIMEOUT_S": str(GRACEFUL_S), "NLUSERVE_INFERENCE_THREADS": "1"},
    )
    try:
        wait_ready(srv)
        text = ("张三在北京大学读书，李四去了上海。" * 20)[:200]
        with httpx.Client(base_url=srv.url, timeout=60) as client:
            started = time.monotonic()
            assert client.post("/v1/models/tiny/predict", json={"texts": [text]}).is_success
            per_text = max(time.monotonic() - started, 0.005)
        # About 1.5 s a call, eight of them per worker: far more than 3 s of work.
        body = {"texts": [text] * max(1, min(64, math.ceil(1.5 / per_text)))}
        clients = [httpx.Client(base_url=srv.url, timeout=60) for _ in range(8 * workers)]
        try:
            for client in clients:
                assert client.get("/healthz").status_code == 200
            with ThreadPoolExecutor(len(clients)) as pool:
                calls = [pool.submit(c.post, "/v1/models/tiny/predict", json=body) for c in clients]
                time.sleep(0.5)
                srv.proc.send_signal(signal.SIGTERM)
                answers = [f.result(timeout=60) for f in calls]
        finally:
            for client in clients:
                client.close()
        statuses = sorted(r.status_code for r in answers)
        assert set(statuses) <= {200, 503}, [(r.status_code, r.text[:200]) for r in answers]
        refused = [r for r in answers if r.status_code == 503]
        assert refused, statuses  # the timeout did cut some off
        for r in refused:
            assert r.headers["content-type"] == "application/problem+json", r.text
            assert r.json()["type"].endswith("/shutting-down"), r.text
            assert r.headers["retry-after"] == "1"
        # uvicorn re-raises the SIGTERM it handled once it is done; gunicorn exits 0.
        assert srv.proc.wait(timeout=GRACEFUL_S + 20) in (0, -signal.SIGTERM), srv.output()
        assert "Traceback" not in srv.output()
    finally:
        if srv.proc.poll() is None:
            os.killpg(srv.proc.pid, signal.SIGKILL)
            srv.proc.wait(timeout=30)
