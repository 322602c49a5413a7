"""A real ``nluserve serve`` in a subprocess of its own process group, and waiting for it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.services import free_port

STARTUP_S = 90.0


@dataclass
class Server:
    """A running ``nluserve serve`` and where to reach it."""

    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


def start_server(tmp_path: Path, args: list[str], env: dict[str, str]) -> Server:
    """``nluserve serve ARGS --port P`` with auth off and ``env`` added; not yet ready."""
    port = free_port()
    full_env = {
        **os.environ,
        "NLUSERVE_DATA_DIR": str(tmp_path / "data"),
        "NLUSERVE_AUTH": "false",
        "NLUSERVE_LOG_LEVEL": "info",  # the log is shown when a test fails
        **env,
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nluserve", "serve", *args, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,  # its own process group: teardown can reap the workers too
        )
    return Server(proc, f"http://127.0.0.1:{port}", tmp_path / "data", log)


def wait_ready(srv: Server, timeout: float = STARTUP_S) -> None:
    """Until ``/readyz`` answers 200; fails with the server's log if it exits or times out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if srv.proc.poll() is not None:
            raise AssertionError(f"server exited early:\n{srv.output()}")
        try:
            if httpx.get(srv.url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready after {timeout} s:\n{srv.output()}")
