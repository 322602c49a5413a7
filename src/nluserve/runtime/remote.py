"""Running graphs in the shared inference process (runtime/host.py) instead of in-process.

``InferenceHost`` starts and supervises that process from the server's parent process;
``RemoteBackend`` is what the workers' models run their batches through. It is a
``Backend`` like ``OnnxBackend``: batching, windows and decoding stay in the workers, so this
is the only seam. The stdlib's ``multiprocessing.connection`` does the framing and the HMAC
handshake on the socket (a random key per server start); messages are runtime/wire.py's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Client, Connection
from typing import IO

import numpy as np

from nluserve.errors import InferenceUnavailableError
from nluserve.runtime.wire import join_batches, pack, unpack

log = logging.getLogger("nluserve.inference")

ADDRESS_ENV = "NLUSERVE_INFERENCE_ADDRESS"
AUTHKEY_ENV = "NLUSERVE_INFERENCE_AUTHKEY"


class RemoteModelError(RuntimeError):
    """The inference process ran the graph and it failed (not a connection problem)."""


class RemoteBackend:
    """Runs one model's batches in the inference process; one connection per calling thread.

    A batch runner thread sends a batch and blocks for its answer, as it would on a local
    session. A broken connection is retried once on a fresh one (the process may have been
    restarted; a graph run has no side effects), then the call fails as unavailable (503).
    """

    def __init__(self, model: str, address: str, authkey: bytes, timeout_s: float = 60.0) -> None:
        self.model = model
        self.address = address
        self.authkey = authkey
        self.timeout_s = timeout_s
        self._local = threading.local()

    @classmethod
    def from_env(cls, model: str, timeout_s: float = 60.0) -> RemoteBackend:
        """The backend for a worker started by ``nluserve serve`` with an inference process."""
        address, key = os.environ.get(ADDRESS_ENV), os.environ.get(AUTHKEY_ENV)
        if not address or not key:
            raise InferenceUnavailableError(
                "NLUSERVE_INFERENCE_PROCESS is on but no inference process was started: "
                "start the server with `nluserve serve`"
            )
        return cls(model, address, bytes.fromhex(key), timeout_s)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        header, arrays = self._call(pack({"op": "run", "model": self.model}, feeds))
        if not header.get("ok"):
            raise RemoteModelError(header.get("error", "the inference process failed"))
        return arrays["output"]

    def run_many(self, batches: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
        """One call's batches in one message: the process runs them side by side."""
        header, arrays = self._call(
            pack({"op": "run", "model": self.model, "batches": len(batches)}, join_batches(batches))
        )
        if not header.get("ok"):
            raise RemoteModelError(header.get("error", "the inference process failed"))
        try:
            return [arrays[str(k)] for k in range(len(batches))]
        except KeyError as exc:
            raise RemoteModelError(f"the inference process left out batch {exc}") from exc

    def ping(self, timeout_s: float = 2.0) -> None:
        """Raises unless the process answers within ``timeout_s`` (or the backend's own
        timeout, if shorter) and serves this model."""
        header, _ = self._call(pack({"op": "ping"}), min(timeout_s, self.timeout_s))
        served = header.get("models")
        if not isinstance(served, list) or self.model not in served:
            raise InferenceUnavailableError(f"the inference process does not serve {self.model}")

    def _call(
        self, message: bytes, timeout_s: float | None = None
    ) -> tuple[dict[str, object], dict[str, np.ndarray]]:
        wait_s = self.timeout_s if timeout_s is None else timeout_s
        for attempt in (1, 2):
            conn: Connection | None = None
            try:
                conn = self._connection()
                conn.send_bytes(message)
                if not conn.poll(wait_s):
                    raise TimeoutError(f"no answer within {wait_s:g} s")
                return unpack(conn.recv_bytes())
            except (OSError, EOFError) as exc:  # TimeoutError and refused connections included
                self._drop(conn)
                # A slow answer is not retried: that would only double the wait.
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise InferenceUnavailableError(
                        f"the inference process is unreachable ({type(exc).__name__})"
                    ) from exc
        raise AssertionError("unreachable")

    def _connection(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = Client(self.address, family="AF_UNIX", authkey=self.authkey)
            self._local.conn = conn
        return conn

    def _drop(self, conn: Connection | None) -> None:
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()


class InferenceHost:
    """Starts the inference process, restarts it if it dies, stops it with the server.

    The socket lives in a private directory (mode 0700) and the key is random per start and
    passed to the workers in their environment, so only this server's workers can connect.
    """

    def __init__(
        self,
        models: list[str],
        device: str,
        threads: int,
        slots: int = 1,
        merge: bool = True,
        max_rows: int = 32,
        batch_tokens: int = 4096,
        startup_timeout_s: float = 600.0,
        on_restart: Callable[[], None] | None = None,
    ) -> None:
        self.models = models
        self.device = device
        self.threads = threads
        self.slots = slots  # graphs run at once, over all workers' connections
        self.merge = merge  # workers' batches merged into one run where they fit (runqueue.py)
        self.max_rows = max_rows
        self.batch_tokens = batch_tokens
        self.startup_timeout_s = startup_timeout_s
        self.dir = tempfile.mkdtemp(prefix="nluserve-inference-")
        self.address = os.path.join(self.dir, "socket")
        self.authkey = os.urandom(32)
        self.restarts = 0
        self.on_restart = on_restart  # the server counts restarts in its metrics
        self._proc: subprocess.Popen[str] | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        """The running inference process, if any."""
        return self._proc.pid if self._proc else None

    def env(self) -> dict[str, str]:
        """What a worker needs to connect (its RemoteBackend reads these)."""
        return {ADDRESS_ENV: self.address, AUTHKEY_ENV: self.authkey.hex()}

    def start(self, export_env: bool = True) -> InferenceHost:
        """Start the process and wait until every model is loaded; export env for workers."""
        self._spawn()
        # A forked worker must not hold the process's stdin: it exits when that closes, and
        # workers outliving a SIGKILLed master kept it open (and it running) for good.
        os.register_at_fork(after_in_child=partial(_forget_in_child, weakref.ref(self)))
        if export_env:
            os.environ.update(self.env())
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="inference-host")
        self._watcher.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the process (closing its stdin is its signal) and remove the socket."""
        self._stopping.set()
        proc = self._proc
        if proc is not None:
            _close_pipes(proc)  # closing its stdin is the signal to exit
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._watcher is not None:
            self._watcher.join(timeout_s)
        shutil.rmtree(self.dir, ignore_errors=True)

    def _forget(self) -> None:
        """In a forked child: close this process's copies of the pipes; the parent keeps its."""
        proc, self._proc = self._proc, None
        if proc is not None:
            _close_pipes(proc)

    def _spawn(self) -> None:
        config = {
            "models": self.models,
            "device": self.device,
            "threads": self.threads,
            "slots": self.slots,
            "merge": self.merge,
            "max_rows": self.max_rows,
            "batch_tokens": self.batch_tokens,
            "address": self.address,
            "authkey": self.authkey.hex(),
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "nluserve.runtime.host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps(config) + "\n")
        proc.stdin.flush()
        if _read_line(proc.stdout, self.startup_timeout_s) != "ready":
            proc.kill()
            proc.wait()
            _close_pipes(proc)
            raise InferenceUnavailableError(
                f"the inference process did not start (exit code {proc.poll()}); see its log above"
            )
        self._proc = proc
        log.info("inference process ready", extra={"fields": {"pid": proc.pid}})

    def _watch(self) -> None:
        delay = 0.5
        while not self._stopping.is_set():
            proc = self._proc
            assert proc is not None
            code = proc.wait()
            _close_pipes(proc)
            if self._stopping.is_set():
                return
            log.error("inference process exited; restarting", extra={"fields": {"exit_code": code}})
            try:
                self._spawn()
                self.restarts += 1
                if self.on_restart is not None:
                    self.on_restart()
                delay = 0.5
            except InferenceUnavailableError:
                time.sleep(delay)
                delay = min(delay * 2, 30.0)


def _forget_in_child(host: weakref.ref[InferenceHost]) -> None:
    found = host()
    if found is not None:
        found._forget()


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _read_line(stream: IO[str], timeout_s: float) -> str:
    """The process's first line, or "" when it exits or takes longer than ``timeout_s``."""
    found: list[str] = []
    reader = threading.Thread(target=lambda: found.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    return found[0].strip() if found else ""
