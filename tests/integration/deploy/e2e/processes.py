"""Child processes of the suite: each in its own process group, its output in a log file.

Every wait has a deadline, and ``stop()`` ends the whole group (SIGTERM, then SIGKILL), so a
failing test leaves no nginx, gunicorn worker or Prometheus behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from tests.integration.deploy.conftest import missing_tool
from tests.support.services import free_port

T = TypeVar("T")


def tool(name: str) -> str:
    """The path of a binary (Debian keeps some in sbin), or skip/fail as ``missing_tool`` says."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")
    if found is None:
        missing_tool(name)
        raise AssertionError("unreachable")  # missing_tool raises
    return found


def free_port_pair() -> int:
    """A port p with p and p + 1 both free: the renderer puts instances on consecutive ports."""
    for _ in range(200):
        port = free_port()
        if port < 65535 and _bindable(port + 1):
            return port
    raise AssertionError("no two consecutive free loopback ports")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.1) -> T:
    """``probe()``'s first truthy value; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError):
            value = probe()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


class Service:
    """One long-running command in a new session (its own process group)."""

    def __init__(
        self, name: str, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} is not running"
        return self.proc.pid

    def start(self) -> None:
        assert self.proc is None, f"{self.name} is already running"
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}):\n{text[-chars:]}"

    def terminate(self, timeout: float) -> int:
        """SIGTERM to the main process only (systemd's KillMode=mixed), then wait for it; then
        SIGKILL whatever is left of the group. Returns the main process's exit status."""
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = -9
        self.stop()
        return code

    def send(self, sig: int) -> None:
        """Send ``sig`` to the whole process group, if it is running."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        """End the whole process group: SIGTERM, a few seconds' grace, SIGKILL."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None


def children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (from /proc: the ppid field of each process)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            # Fields after the command name, which is in parentheses and may contain spaces.
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def run(argv: Sequence[str], timeout: float, env: dict[str, str] | None = None) -> str:
    """Run a command to completion; its combined output, or AssertionError with it."""
    proc = subprocess.run(
        list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{output[-4000:]}"
    return output


def connections(pid: int, port: int) -> int:
    """Established TCP connections that process ``pid`` holds on its local ``port``."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    count = 0
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01" and fields[9] in inodes:
                    count += 1
    return count
