"""Exact quotas across real server processes: `nluserve serve` processes started by the CLI.

Four server processes share one Redis and one PostgreSQL, or one server's four workers share a
SQLite file; clients hammer them at 64 concurrency with quota 500, and exactly the daily quota is
admitted and audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nluserve.db.migrate import upgrade
from nluserve.db.repo import Repository
from nluserve.settings import Settings, ensure_data_dir
from nluserve.tenancy.service import TenancyService, database_url
from tests.integration.tenancy.harness import daily_remaining
from tests.support.services import RedisServer, free_port

READY_TIMEOUT_S = 90.0
AUDIT_TIMEOUT_S = 10.0  # audit batches flush every 0.5 s; a loaded machine gets some slack
CONCURRENCY = 64
TEXT = "张三在北京大学读书。"

pytestmark = pytest.mark.slow


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nluserve", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(env: dict[str, str], *args: str) -> str:
    proc = _cli(env, *args)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"nluserve {' '.join(args)}: {err}"
    return out


def _env(data_dir: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NLUSERVE_")}
    env.update(
        NLUSERVE_DATA_DIR=str(data_dir),
        NLUSERVE_LOG_LEVEL="warning",
        NLUSERVE_GRACEFUL_TIMEOUT_S="3",
        **{f"NLUSERVE_{k.upper()}": v for k, v in values.items()},
    )
    return env


class Server:
    """One `nluserve serve` process group; its log goes to a file for the failure message."""

    def __init__(self, env: dict[str, str], model_dir: Path, log: Path, workers: int) -> None:
        self.port = free_port()
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nluserve",
                "serve",
                "--workers",
                str(workers),
                "--port",
                str(self.port),
                "--models",
                str(model_dir),
            ],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, deadline: float) -> None:
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + "/readyz").status_code == 200:
                        return
                time.sleep(0.25)
        raise AssertionError(f"server on {self.port} not ready:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._fh.close()


@contextlib.contextmanager
def serving(
    envs: list[dict[str, str]], model_dir: Path, tmp: Path, workers: int
) -> Iterator[list[Server]]:
    """One server per environment, all ready; stopped (process groups) afterwards."""
    servers: list[Server] = []
    try:
        for i, env in enumerate(envs):
            servers.append(Server(env, model_dir, tmp / f"server-{i}.log", workers))
        deadline = time.monotonic() + READY_TIMEOUT_S
        for server in servers:
            server.wait_ready(deadline)
        yield servers
    finally:
        for server in servers:
            server.stop()


async def _fire(servers: list[Server], key: str, total: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    gate = asyncio.Semaphore(CONCURRENCY)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:

        async def one(i: int) -> httpx.Response:
            url = servers[i % len(servers)].url + "/v1/models/tiny/predict"
            async with gate:
                return await client.post(url, json={"text": TEXT}, headers=headers)

        return await asyncio.gather(*(one(i) for i in range(total)))


def _check(responses: list[httpx.Response], quota: int) -> None:
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({200: quota, 429: len(responses) - quota}), statuses
    policies = Counter(r.json().get("policy") for r in responses if r.status_code == 429)
    assert policies == Counter({"daily": len(responses) - quota}), policies
    assert all(int(r.headers["Retry-After"]) > 0 for r in responses if r.status_code == 429)
    remaining = sorted(daily_remaining(r) for r in responses if r.status_code == 200)
    assert remaining == list(range(quota))  # every admitted call was counted exactly once


def _audited(url: str, tenant_id: str, want: int) -> int:
    repo = Repository(url)
    try:
        deadline = time.monotonic() + AUDIT_TIMEOUT_S
        while True:
            got = repo.audit_count(tenant_id)
            if got >= want or time.monotonic() > deadline:
                return got
            time.sleep(0.25)
    finally:
        repo.close()


def test_four_servers_on_redis_and_postgres_admit_exactly_the_quota(
    tmp_path: Path, tiny_ner_dir: Path, redis_server: RedisServer, postgres_url: str
) -> None:
    quota, total = 500, 700
    env = _env(
        tmp_path / "cli",
        database_url=postgres_url,
        redis_url=redis_server.url,
        key_pepper="a-shared-pepper-for-every-machine",
    )
    # Two machines deploying at once both run the migration step.
    migrations = [_cli(env, "migrate", "--json") for _ in range(2)]
    outputs = [p.communicate(timeout=120) for p in migrations]
    for proc, (out, err) in zip(migrations, outputs, strict=True):
        assert proc.returncode == 0, err
        assert json.loads(out)["revision"] == "0003"
    # Whether they also agree on one signing key is test_first_start's (a race, found there).

    created = json.loads(
        _run(
            env,
            "tenant",
            "create",
            "acme",
            "--quota-daily",
            str(quota),
            "--rate",
            "10000",
            "--burst",
            "10000",
            "--json",
        )
    )
    tenant_id, key = created["tenant"]["id"], created["api_key"]
    assert created["tenant"]["quota_daily"] == quota

    # Four server processes, as four machines: each its own data directory (spool, metrics),
    # all sharing Redis and PostgreSQL.
    machines = [{**env, "NLUSERVE_DATA_DIR": str(tmp_path / f"machine-{i}")} for i in range(4)]
    with serving(machines, tiny_ner_dir, tmp_path, workers=1) as servers:
        responses = asyncio.run(_fire(servers, key, total))
        _check(responses, quota)
        assert _audited(postgres_url, tenant_id, quota) == quota


def test_four_workers_on_sqlite_admit_exactly_the_quota(tmp_path: Path, tiny_ner_dir: Path) -> None:
    quota, total = 500, 700
    data_dir = tmp_path / "data"
    # The CLI path is the test above's; here the tenant is made in-process (each CLI call
    # costs seconds of interpreter start on a busy machine). Same database, same pepper file.
    settings = Settings(data_dir=data_dir)
    ensure_data_dir(settings)
    upgrade(database_url(settings))
    service = TenancyService.from_settings(settings)
    tenant, new_key = service.create_tenant("acme", quota, 10_000.0, 10_000)
    service.repo.close()
    with serving([_env(data_dir)], tiny_ner_dir, tmp_path, workers=4) as servers:
        responses = asyncio.run(_fire(servers, new_key.api_key, total))
        _check(responses, quota)
        assert _audited(database_url(settings), tenant.id, quota) == quota
