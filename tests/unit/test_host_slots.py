"""The inference process runs at most the thread budget's graphs at once, over all workers.

Each worker may have the whole budget in flight (so a busy worker can use every core while the
others idle); the process is where the cores' one queue is kept. The graph here is the bundled
sentiment model's real session, wrapped to count how many runs overlap.
"""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import pytest

from nluserve import load_model
from nluserve.runtime.host import serve_connection
from nluserve.runtime.runqueue import RunQueue
from nluserve.runtime.wire import pack, unpack
from nluserve.settings import Settings
from tests.support.overlap import OverlapGraph


def _callers(slots: int, merge: bool = True, connections: int = 6) -> int:
    model = load_model("sentiment", threads=1)
    feeds = model.encoder(["房间很干净，服务也好。"])
    graph = OverlapGraph(model.backend)
    runs = RunQueue({"sentiment": graph}, slots=slots, merge=merge)
    ends: list[Connection] = []
    servers = []
    for _ in range(connections):
        mine, theirs = Pipe()
        ends.append(mine)
        server = threading.Thread(
            target=serve_connection,
            args=(theirs, runs),
            daemon=True,
        )
        server.start()
        servers.append(server)

    def call(conn: Connection) -> None:
        for _ in range(5):
            conn.send_bytes(pack({"op": "run", "model": "sentiment"}, feeds))
            header, arrays = unpack(conn.recv_bytes())
            assert header["ok"] and arrays["output"].shape[0] == 1

    callers = [threading.Thread(target=call, args=(conn,)) for conn in ends]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(30)
    for conn in ends:
        conn.close()
    for server in servers:
        server.join(5)
    return graph.most


@pytest.mark.parametrize("merge", [True, False])
def test_runs_over_all_connections_never_exceed_the_slots(merge: bool) -> None:
    assert _callers(2, merge) == 2


def test_with_a_slot_per_connection_every_connection_runs_at_once() -> None:
    # What the slots prevent: six workers' runner threads on two cores at once.
    assert _callers(6, merge=False) > 2


@pytest.mark.parametrize(("workers", "threads", "budget"), [(2, 0, 2), (4, 0, 4), (2, 3, 6)])
def test_with_the_inference_process_each_worker_may_use_the_whole_budget(
    monkeypatch: pytest.MonkeyPatch, workers: int, threads: int, budget: int
) -> None:
    monkeypatch.setattr("nluserve.settings.usable_cores", lambda: 2)
    local = Settings(workers=workers, inference_threads=threads, inference_process="off")
    remote = Settings(workers=workers, inference_threads=threads, inference_process="on")
    assert local.thread_budget() == remote.thread_budget() == budget
    assert local.threads_per_process() * workers == budget  # in-process: a share each
    assert remote.threads_per_process() == budget  # the process admits `budget` in all


@pytest.mark.parametrize(
    ("cores", "workers", "run_threads", "layout"),
    [
        (2, 2, 1, (1, 2)),  # the default: one thread a run, as many runs as cores
        (2, 2, 2, (2, 1)),  # a lone call on both cores, one run at a time
        (2, 1, 4, (2, 1)),  # never more threads than the budget
        (8, 4, 2, (2, 4)),
        (8, 4, 3, (3, 2)),  # 3 x 2 <= 8: the rest stays idle rather than oversubscribed
    ],
)
def test_the_inference_process_splits_the_budget_into_runs_of_the_given_threads(
    monkeypatch: pytest.MonkeyPatch,
    cores: int,
    workers: int,
    run_threads: int,
    layout: tuple[int, int],
) -> None:
    monkeypatch.setattr("nluserve.settings.usable_cores", lambda: cores)
    settings = Settings(workers=workers, inference_process="on", inference_run_threads=run_threads)
    assert settings.inference_layout() == layout
    threads, slots = layout
    assert threads * slots <= settings.thread_budget()


@pytest.mark.parametrize(("cores", "workers", "layout"), [(16, 4, (1, 2)), (1, 1, (1, 1))])
def test_on_a_gpu_the_inference_process_runs_at_most_two_graphs_at_once(
    monkeypatch: pytest.MonkeyPatch, cores: int, workers: int, layout: tuple[int, int]
) -> None:
    monkeypatch.setattr("nluserve.settings.usable_cores", lambda: cores)
    settings = Settings(workers=workers, device="cuda", inference_process="on")
    assert settings.inference_layout() == layout


def test_serve_starts_the_inference_process_with_that_layout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: dict[str, Any] = {}

    class FakeHost:  # records what serve() asks for; the real one is tested elsewhere
        def __init__(self, models: list[str], device: str, **kwargs: Any) -> None:
            started.update(kwargs)

        def start(self) -> FakeHost:
            return self

        def stop(self) -> None:
            started["stopped"] = True

    monkeypatch.setattr("nluserve.settings.usable_cores", lambda: 2)
    monkeypatch.setattr("nluserve.runtime.remote.InferenceHost", FakeHost)
    monkeypatch.setattr("nluserve.server.run._serve", lambda settings: None)
    monkeypatch.setattr("nluserve.observability.logging.configure", lambda *args: None)
    from nluserve.server.run import serve

    serve(Settings(workers=2, inference_process="on", inference_run_threads=2))
    assert (started["threads"], started["slots"], started["stopped"]) == (2, 1, True)
