"""The inference process: one copy of every model's graph, run for all HTTP workers.

Started by ``nluserve serve`` (runtime/remote.py: InferenceHost) when
``NLUSERVE_INFERENCE_PROCESS`` is on (by default with several workers: on a GPU, or for a
transformer-size graph on a CPU). The workers keep tokenising, batching and decoding; only the
graph runs here, so a GPU holds one CUDA context and one copy of the weights however many
workers there are, and every worker's batches wait in one queue (runtime/runqueue.py), where
they merge into larger runs or spread over idle slots.

Its configuration arrives as one JSON line on stdin (the socket's auth key is a secret, so
not in argv, where ``ps`` shows it). It answers "ready" on stdout once every model is loaded.
It exits when stdin closes, so it never outlives the server that started it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from pathlib import Path

from nluserve.errors import NluserveError
from nluserve.models import store
from nluserve.runtime.runqueue import RunObserver, RunQueue
from nluserve.runtime.session import OnnxBackend, providers_for
from nluserve.runtime.wire import pack, split_batches, unpack

log = logging.getLogger("nluserve.inference")


def load_backends(models: list[str], device: str, threads: int) -> dict[str, OnnxBackend]:
    """A verified session for each model, keyed by the model's name."""
    backends = {}
    providers = providers_for(device)
    for ref in models:
        path = store.resolve(ref)
        manifest = store.read_manifest(path)
        store.verify(path, manifest)
        backends[manifest.name] = OnnxBackend(
            path / manifest.graph, threads=threads, providers=providers
        )
    return backends


def serve_connection(conn: Connection, runs: RunQueue) -> None:
    """Answer one worker thread's requests, in order, until it hangs up.

    Every connection's batches go to the one ``RunQueue``, so the machine's cores (or its GPU)
    serve one queue of every worker's batches, merged where they fit, rather than one per worker.
    """
    with conn:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                return
            try:
                header, feeds = unpack(data)
                if header.get("op") == "ping":
                    reply = pack({"ok": True, "models": sorted(runs.graphs)})
                elif "batches" in header:  # one call's batches, run side by side
                    outputs = runs.run_many(
                        header["model"], split_batches(feeds, header["batches"])
                    )
                    reply = pack({"ok": True}, {str(k): out for k, out in enumerate(outputs)})
                else:
                    output = runs.run(header["model"], feeds)
                    reply = pack({"ok": True}, {"output": output})
            except Exception as exc:  # the worker raises it for its callers; we keep serving
                reply = pack({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
            try:
                conn.send_bytes(reply)
            except OSError:
                return


def _metrics_observer() -> RunObserver:
    """Record runs where the server aggregates metrics across processes, else nowhere."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return lambda *_: None  # this process's own registry would never be scraped
    from nluserve.observability.metrics import (
        INFERENCE_PROCESS_FAILURES,
        INFERENCE_PROCESS_MERGED,
        INFERENCE_PROCESS_RUN,
    )

    def observe(model: str, seconds: float, ok: bool, batches: int) -> None:
        if ok:
            INFERENCE_PROCESS_RUN.labels(model).observe(seconds)
            INFERENCE_PROCESS_MERGED.labels(model).observe(batches)
        else:
            INFERENCE_PROCESS_FAILURES.labels(model).inc()

    return observe


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    config = json.loads(sys.stdin.readline())
    try:
        backends = load_backends(config["models"], config["device"], config["threads"])
    except NluserveError as exc:  # no provider, a missing or corrupt model: one line, not a trace
        log.error("inference process: %s", exc)
        sys.exit(1)
    runs = RunQueue(
        backends,
        slots=int(config.get("slots", 1)),
        merge=bool(config.get("merge", True)),
        split=config["device"] == "cpu",
        max_rows=int(config.get("max_rows", 32)),
        batch_tokens=int(config.get("batch_tokens", 4096)),
        observe=_metrics_observer(),
    )
    address = config["address"]
    Path(address).unlink(missing_ok=True)  # left by a predecessor that was killed
    listener = Listener(address, family="AF_UNIX", authkey=bytes.fromhex(config["authkey"]))
    os.chmod(address, 0o600)

    def accept() -> None:
        while True:
            try:
                conn = listener.accept()
            except (AuthenticationError, EOFError, ConnectionError) as exc:
                log.warning("inference process: refused a connection (%s)", type(exc).__name__)
                continue
            threading.Thread(target=serve_connection, args=(conn, runs), daemon=True).start()

    threading.Thread(target=accept, daemon=True, name="accept").start()
    sys.stdout.write("ready\n")  # the parent waits for this line (protocol, not a log)
    sys.stdout.flush()
    sys.stdin.read()  # returns when the parent closes the pipe or dies
    listener.close()


if __name__ == "__main__":
    main()
