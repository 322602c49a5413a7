"""Real Redis and PostgreSQL servers for integration tests, on free loopback ports in temp dirs.

Integration tests use the real services (no fakes): a quota store is only exact if the real
Lua script on a real Redis says so, and a spool only works if a real database really goes away.
A missing binary skips these tests on a developer machine and fails them under ``CI=true``,
so a CI image that lost a package cannot go green by skipping.

PostgreSQL refuses to run as root, so when the tests run as root its commands run as the
``postgres`` system user (``runuser``) in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REDIS_BIN = Path(os.environ.get("NLUSERVE_TEST_REDIS", "/usr/bin/redis-server"))
PG_BIN = Path(os.environ.get("NLUSERVE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_TIMEOUT_S = 30.0


def missing(what: str) -> None:
    """Skip (developer machine) or fail (CI) because a service binary is not installed."""
    reason = f"{what} is not installed; install it to run the real-service integration tests"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class RedisServer:
    """One redis-server process; ``stop()``/``start()`` keep its port and its data directory."""

    def __init__(self, directory: Path, persist: bool = False, extra: Sequence[str] = ()) -> None:
        self.directory = directory
        self.persist = persist
        self.extra = list(extra)  # more redis-server options, e.g. ["--requirepass", "..."]
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.proc is not None:
            return
        args = [
            str(REDIS_BIN),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.directory / "redis.log"),
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port)
        except TimeoutError:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM: Redis shuts down cleanly (and, with ``persist``, keeps its append-only file)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class PostgresServer:
    """One PostgreSQL cluster (initdb, pg_ctl) with ``stop()``/``start()`` and fresh databases."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.running = False

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout}{proc.stderr}")

    def init(self) -> None:
        self._run(
            str(PG_BIN / "initdb"), "-U", "postgres", "--auth=trust", "-D", str(self.data), "-N"
        )

    def start(self) -> None:
        if self.running:
            return
        # fsync off: these clusters are thrown away, and the machine is shared with trainings.
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "postgres.log"),
            "-w",
            "-t",
            str(int(START_TIMEOUT_S)),
            "-o",
            options,
            "start",
        )
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: open connections are cut, as when a database host goes away."""
        if not self.running:
            return
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self.running = False

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        self._run(
            str(PG_BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            name,
        )
        return self.url(name)


def _owned_tmpdir(prefix: str) -> Path:
    # Not pytest's tmp_path: its parents are root-only (0700), and postgres must reach its dir.
    # Short, so the Unix socket path stays under the 107-byte limit.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")
    return path


@contextlib.contextmanager
def running_redis(
    directory: Path, persist: bool = False, extra: Sequence[str] = ()
) -> Iterator[RedisServer]:
    """A redis-server in ``directory`` (created) for the ``with`` block."""
    if not REDIS_BIN.exists():
        missing(f"redis-server ({REDIS_BIN})")
    directory.mkdir()
    server = RedisServer(directory, persist=persist, extra=extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis (no persistence: a restart starts from empty counters)."""
    with running_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def persistent_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh Redis with an fsync-always append-only file: a restart keeps every counter."""
    with running_redis(tmp_path / "redis-aof", persist=True) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session; tests take fresh databases from it."""
    for tool in ("initdb", "pg_ctl", "postgres", "createdb"):
        if not (PG_BIN / tool).exists():
            missing(f"PostgreSQL ({PG_BIN / tool})")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing("runuser (PostgreSQL refuses to run as root)")
    directory = _owned_tmpdir("nlupg-")
    server = PostgresServer(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL."""
    postgres_server.start()  # a previous test may have stopped it and failed before restarting
    return postgres_server.create_database()
