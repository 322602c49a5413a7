"""The shared inference process: one copy of each graph, fed by every worker's batches.

Real processes and sockets throughout: the host runs ``python -m nluserve.runtime.host`` and
the server test runs ``nluserve serve`` with two gunicorn workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path

import httpx
import numpy as np
import pytest

from nluserve import load_model
from nluserve.errors import InferenceUnavailableError
from nluserve.runtime.model import Model
from nluserve.runtime.remote import InferenceHost, RemoteBackend, RemoteModelError
from nluserve.runtime.results import NerResult
from tests.support.server_process import start_server, wait_ready
from tests.support.serving import assert_problem, metric

pytestmark = pytest.mark.slow

TEXTS = [
    "张三在北京大学读书。",
    "李四去了上海浦东新区的华为公司。",
    "a",
    "长" * 300,  # longer than the window: several runs for one text
    "王五和赵六在广州见面，然后去了深圳。",
]


def _remote(host: InferenceHost, ref: str | Path) -> Model:
    """The model as a worker loads it: local vocabulary, graph runs in the host."""
    local = load_model(ref, threads=1)
    return Model(
        local.manifest,
        RemoteBackend(local.name, host.address, host.authkey, timeout_s=30),
        local.encoder,
        path=local.path,
    )


@pytest.fixture(scope="module")
def host(tiny_ner_dir: Path) -> Iterator[InferenceHost]:
    running = InferenceHost([str(tiny_ner_dir), "sentiment"], "cpu", threads=1)
    running.start(export_env=False)
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("which", ["tiny", "sentiment"])
def test_remote_graphs_answer_exactly_as_local_ones(
    host: InferenceHost, tiny_ner_dir: Path, which: str
) -> None:
    ref = tiny_ner_dir if which == "tiny" else "sentiment"
    local, remote = load_model(ref, threads=1), _remote(host, ref)
    assert remote.predict(TEXTS) == local.predict(TEXTS)


def test_concurrent_callers_each_get_their_own_answers(
    host: InferenceHost, tiny_ner_dir: Path
) -> None:
    local, remote = load_model(tiny_ner_dir, threads=1), _remote(host, tiny_ner_dir)
    calls = [[TEXTS[i % len(TEXTS)], f"第{i}号：张三在北京"] for i in range(64)]
    expected = [local.predict(texts) for texts in calls]
    with ThreadPoolExecutor(8) as pool:  # 8 threads: 8 connections, served concurrently
        got = list(pool.map(remote.predict, calls))
    assert got == expected


def test_a_wrong_key_is_refused_and_the_process_keeps_serving(
    host: InferenceHost, tiny_ner_dir: Path
) -> None:
    with pytest.raises(AuthenticationError):
        Client(host.address, family="AF_UNIX", authkey=b"not the key")
    assert oct(Path(host.dir).stat().st_mode & 0o777) == "0o700"  # nobody else reaches the socket
    RemoteBackend("tiny", host.address, host.authkey).ping()


def test_an_unknown_model_fails_that_call_only(host: InferenceHost) -> None:
    backend = RemoteBackend("nope", host.address, host.authkey)
    feeds = {"chars": np.ones((1, 3), dtype=np.int64)}
    with pytest.raises(RemoteModelError, match="KeyError"):
        backend.run(feeds)
    with pytest.raises(InferenceUnavailableError, match="does not serve nope"):
        backend.ping()
    RemoteBackend("sentiment", host.address, host.authkey).ping()


def test_a_stalled_process_fails_the_call_after_its_timeout(
    host: InferenceHost, tiny_ner_dir: Path
) -> None:
    backend = RemoteBackend("tiny", host.address, host.authkey, timeout_s=1.0)
    backend.ping()  # connected
    assert host.pid is not None
    os.kill(host.pid, signal.SIGSTOP)
    _wait_until_stopped(host.pid)  # kill() returns before the signal has taken effect
    try:
        started = time.monotonic()
        with pytest.raises(InferenceUnavailableError, match="TimeoutError"):
            backend.ping()
        assert time.monotonic() - started < 1.9  # one timeout, not one per retry
    finally:
        os.kill(host.pid, signal.SIGCONT)
    backend.ping()  # a fresh connection once it runs again


def test_a_killed_process_is_restarted_and_callers_reconnect(tiny_ner_dir: Path) -> None:
    running = InferenceHost([str(tiny_ner_dir)], "cpu", threads=1).start(export_env=False)
    try:
        remote = _remote(running, tiny_ner_dir)
        before = remote.predict(TEXTS[:2])
        first = running.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        with pytest.raises(InferenceUnavailableError):
            remote.predict(TEXTS[:2])  # right after the kill: refused, not hung
        end = time.monotonic() + 60
        while running.restarts == 0 and time.monotonic() < end:
            time.sleep(0.1)
        assert running.restarts == 1 and running.pid != first
        assert remote.predict(TEXTS[:2]) == before  # the same thread's connection is renewed
    finally:
        running.stop()
    assert not Path(running.dir).exists()


def test_the_process_does_not_outlive_the_server(tiny_ner_dir: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        from nluserve.runtime.remote import InferenceHost
        host = InferenceHost([{str(tiny_ner_dir)!r}], "cpu", threads=1).start()
        print(host.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    os.kill(child, 0)  # running
    parent.kill()  # no clean-up code runs in the parent
    parent.wait()
    parent.stdout.close()
    end = time.monotonic() + 30
    while time.monotonic() < end and _alive(child):
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_served_over_http_by_two_workers_that_hold_no_session(
    tiny_ner_dir: Path, tmp_path: Path
) -> None:
    srv = start_server(
        tmp_path,
        ["--workers", "2", "--models", str(tiny_ner_dir)],
        {"NLUSERVE_INFERENCE_PROCESS": "on"},
    )
    url, proc = srv.url, srv.proc
    try:
        wait_ready(srv)
        ready = httpx.get(url + "/readyz").json()
        assert ready["checks"]["inference-process"] == "ok"
        expected = [
            [(e.text, e.label, e.start, e.end) for e in r.entities]
            for r in load_model(tiny_ner_dir, threads=1).predict(TEXTS)
            if isinstance(r, NerResult)
        ]
        for _ in range(6):  # fresh connections: both workers answer
            answer = _predict(url, {"texts": TEXTS})
            assert answer.status_code == 200, answer.text
            got = [
                [(e["text"], e["label"], e["start"], e["end"]) for e in r["entities"]]
                for r in answer.json()["results"]
            ]
            assert got == expected
        # The graph's own time, recorded by the inference process, is part of /metrics.
        exposition = httpx.get(url + "/metrics").text
        runs = metric(exposition, "nluserve_inference_process_run_seconds_count", {"model": "tiny"})
        batches = metric(exposition, "nluserve_batch_size_texts_count", {"model": "tiny"})
        assert runs >= 6 and runs >= batches
        # One call at a time: each run holds one worker batch, none merged with another's.
        merged = {"model": "tiny"}
        assert (
            metric(exposition, "nluserve_inference_process_batches_per_run_count", merged) == runs
        )
        assert metric(exposition, "nluserve_inference_process_batches_per_run_sum", merged) == runs
        assert metric(exposition, "nluserve_inference_process_run_seconds_sum") > 0

        group = _group(proc.pid)
        hosts = [p for p, cmd in group.items() if "nluserve.runtime.host" in cmd]
        assert len(hosts) == 1
        for pid in group:
            maps = Path(f"/proc/{pid}/maps").read_text()
            # Only the inference process loads ONNX Runtime: the workers hold no weights.
            assert ("onnxruntime" in maps) is (pid == hosts[0]), group[pid]

        os.kill(hosts[0], signal.SIGKILL)
        gone = _predict(url, {"text": TEXTS[0]})
        body = assert_problem(gone, 503)
        assert body["type"].endswith("/inference-unavailable")
        assert gone.headers["Retry-After"] == "1"
        wait_ready(srv)
        assert _predict(url, {"text": TEXTS[0]}).status_code == 200
        exposition = httpx.get(url + "/metrics").text
        assert metric(exposition, "nluserve_inference_process_restarts_total") == 1

        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        end = time.monotonic() + 30
        while time.monotonic() < end and any(_alive(p) for p in group):
            time.sleep(0.1)
        assert not [p for p in _group(proc.pid) if _alive(p)]
        assert not any(_alive(p) for p in group), "a process outlived the server"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _predict(url: str, body: dict[str, object]) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as client:  # a fresh connection: any worker
        return client.post("/v1/models/tiny/predict", json=body)


def _group(pgid: int) -> dict[int, str]:
    """Live processes of the server's process group and their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and _alive(int(entry.name)):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                found[int(entry.name)] = cmd
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    return found


def test_one_worker_with_the_process_reports_both_processes_metrics(
    tiny_ner_dir: Path, tmp_path: Path
) -> None:
    # One uvicorn worker needs no shared metrics directory of its own; the inference process
    # beside it does, or its runs would never reach /metrics.
    srv = start_server(
        tmp_path,
        ["--workers", "1", "--models", str(tiny_ner_dir)],
        {"NLUSERVE_INFERENCE_PROCESS": "on"},
    )
    try:
        wait_ready(srv)
        for _ in range(3):
            assert _predict(srv.url, {"text": TEXTS[0]}).status_code == 200
        exposition = httpx.get(srv.url + "/metrics").text
        assert metric(exposition, "nluserve_inference_process_run_seconds_count") >= 3
        requests = metric(exposition, "nluserve_http_requests_total", {"status": "200"})
        assert requests >= 3  # the worker's own metrics are still there
    finally:
        srv.proc.send_signal(signal.SIGTERM)
        srv.proc.wait(timeout=60)


def _wait_until_stopped(pid: int, timeout_s: float = 5.0) -> None:
    """Until /proc says the process is stopped (state T)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "T":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not stop")


def test_a_frozen_process_makes_readyz_say_so_and_nothing_else_hangs(
    tiny_ner_dir: Path, tmp_path: Path
) -> None:
    # A probe used to wait 60 s on a process that had stopped (SIGSTOP, swapped out) and then
    # forever in the reconnect's handshake, each holding a thread of the shared pool: after a
    # few probes /metrics and every call that needed a thread hung too.
    srv = start_server(
        tmp_path, ["--models", str(tiny_ner_dir)], {"NLUSERVE_INFERENCE_PROCESS": "on"}
    )
    url, proc = srv.url, srv.proc
    try:
        wait_ready(srv)
        (host_pid,) = [p for p, cmd in _group(proc.pid).items() if "nluserve.runtime.host" in cmd]
        os.kill(host_pid, signal.SIGSTOP)
        _wait_until_stopped(host_pid)
        try:
            with httpx.Client(base_url=url, timeout=8) as client:
                for _ in range(8):
                    r = client.get("/readyz")
                    assert r.status_code == 503, r.text
                    assert r.json()["checks"]["inference-process"].startswith("unreachable")
                    assert client.get("/metrics").status_code == 200
                    assert client.get("/v1/models").status_code == 200
        finally:
            os.kill(host_pid, signal.SIGCONT)
        wait_ready(srv)
        assert _predict(url, {"text": TEXTS[0]}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_nothing_outlives_a_master_killed_with_sigkill(tiny_ner_dir: Path, tmp_path: Path) -> None:
    # The workers kept serving (and holding the port) with pid 1 for a parent, and the
    # inference process lived on through the stdin pipe they had inherited.
    srv = start_server(
        tmp_path,
        ["--workers", "2", "--models", str(tiny_ner_dir)],
        {"NLUSERVE_INFERENCE_PROCESS": "on"},
    )
    proc = srv.proc
    try:
        wait_ready(srv)
        group = _group(proc.pid)
        assert len(group) >= 4  # master, two workers, the inference process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        end = time.monotonic() + 20
        while time.monotonic() < end and any(_alive(p) for p in group):
            time.sleep(0.2)
        assert not [cmd for p, cmd in group.items() if _alive(p)]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
