"""The deployment of ``nluserve deploy render``, brought up for real on loopback.

nginx (the rendered sites, see nginx.py) terminates TLS in front of two ``nluserve serve``
instances (the rendered unit's ExecStartPre/ExecStart and env file, 2 gunicorn workers each)
that share one Redis and one PostgreSQL. Besides nginx's ports and paths, what a test machine
forces:

- the secrets the env file leaves to the operator (pepper, admin key, store URLs) are made here;
- the systemd multi-instance unit shares one data directory and binds a per-instance tmpfs over
  its ``prometheus`` directory; without mount namespaces each instance here gets a data
  directory of its own (the shared state is in PostgreSQL and Redis either way);
- only the bundled ``general`` model is served (the fastest to load), and the instances log
  warnings only (an access line per call costs a 2-core machine CPU the load needs).
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select
from sqlalchemy.engine import Engine

from nluserve.db.tables import AuditRow
from nluserve.deploy.render import PROTECTED_HOMES, render_files
from nluserve.tenancy.keys import generate
from tests.integration.deploy.conftest import options, settings
from tests.integration.deploy.e2e.nginx import SITE_TLS, Nginx
from tests.integration.deploy.e2e.processes import Service, children, free_port_pair, wait_until
from tests.integration.deploy.e2e.tls import AsyncLoopback, Loopback, TestCa, trusting
from tests.support.services import free_port

DOMAIN = "api.nluserve.test"
WORKERS = 2
GRACEFUL_TIMEOUT_S = 5.0
TIMEOUT_STOP_S = GRACEFUL_TIMEOUT_S + 10  # the rendered TimeoutStopSec
READY_TIMEOUT_S = 120.0  # two instances loading a model at once on a busy 2-core machine
MODELS = '["general"]'

UNIT = "etc/systemd/system/nluserve@.service"
ENV_FILE = "etc/nluserve/nluserve.env"
PROMETHEUS = "etc/prometheus/prometheus.yml"
ALERTS = "etc/prometheus/nluserve-alerts.yml"


def render(base: Path, first_port: int) -> dict[str, str]:
    """The rendered set for two instances, with this machine's paths: path -> text."""
    venv = Path(sys.prefix)
    prefix = venv.parent if venv.name == ".venv" else Path("/opt/nluserve")
    if any(prefix.is_relative_to(home) for home in PROTECTED_HOMES):
        # A checkout in a home directory, which the unit's ProtectHome=yes would hide (render
        # refuses it): unit_command runs this venv's nluserve in the absent prefix's place.
        prefix = Path("/opt/nluserve")
    opts = options(
        domain=DOMAIN,
        backends=2,
        workers=WORKERS,
        port=first_port,
        prefix=str(prefix),
        data_dir=str(base / "data"),
        log_dir=str(base / "logs"),
        acme_webroot=str(base / "acme-webroot"),
        # Every client of the suite is 127.0.0.1: the per-address limits would be the whole
        # machine's limits. Per-tenant quotas are what the tests measure.
        rate_per_s=5000,
        burst=5000,
        settings=settings(graceful_timeout_s=GRACEFUL_TIMEOUT_S),
    )
    return {str(f.path): f.text for f in render_files(opts)}


def env_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines of a systemd EnvironmentFile (quotes removed, comments skipped)."""
    values = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            value = m[2]
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[m[1]] = value
    return values


def unit_command(unit: str, key: str) -> list[str]:
    """``ExecStart=``/``ExecStartPre=`` of the rendered unit as argv; the venv's ``nluserve``
    stands in for ``<prefix>/.venv/bin/nluserve`` if the venv lives elsewhere."""
    m = re.search(rf"^{key}=(.*)$", unit, re.M)
    assert m, f"the rendered unit has no {key}="
    argv = []
    for arg in shlex.split(m[1]):
        if arg.endswith("/.venv/bin/nluserve") and not Path(arg).exists():
            argv += [sys.executable, "-m", "nluserve"]
        else:
            argv.append(arg)
    return argv


class Instance:
    """One ``nluserve@PORT`` instance: gunicorn master + workers, as the unit starts it."""

    def __init__(self, port: int, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.port = port
        self.service = Service(f"nluserve@{port}", argv, log, env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def upstream(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.service.start()

    def ready(self) -> bool:
        assert self.service.running(), f"{self.service.name} exited\n{self.service.tail()}"
        try:
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self) -> None:
        wait_until(f"{self.service.name} /readyz", self.ready, READY_TIMEOUT_S, every=0.25)
        wait_until(f"{WORKERS} workers of {self.service.name}", self.full, 30)

    def full(self) -> set[int] | None:
        found = self.workers()
        return found if len(found) == WORKERS else None

    def workers(self) -> set[int]:
        return children(self.service.pid)

    def stop_gracefully(self, timeout: float) -> int:
        """systemctl stop: SIGTERM to the master, SIGKILL to the rest after ``timeout``."""
        return self.service.terminate(timeout)


@dataclass
class Stack:
    """Everything the tests talk to; ``services`` are stopped in reverse order at the end."""

    base: Path
    files: dict[str, str]
    ca: TestCa
    nginx: Nginx
    instances: list[Instance]
    database_url: str
    admin_key: str
    services: list[Service] = field(default_factory=list)
    _engine: Engine | None = None

    @property
    def origin(self) -> str:
        return f"https://{DOMAIN}:{self.nginx.https_port}"

    def client(self, ca_pem: bytes | None = None) -> httpx.Client:
        transport = Loopback(DOMAIN, trusting(ca_pem or self.ca.pem))
        return httpx.Client(transport=transport, base_url=self.origin, timeout=30)

    def async_client(self, connections: int = 32) -> httpx.AsyncClient:
        transport = AsyncLoopback(DOMAIN, trusting(self.ca.pem), connections)
        return httpx.AsyncClient(transport=transport, base_url=self.origin, timeout=60)

    def tenant(self, name: str, quota_daily: int = 1_000_000) -> tuple[str, str]:
        """A tenant created by the admin over HTTPS: (tenant id, API key)."""
        with self.client() as client:
            r = client.post(
                "/admin/tenants",
                json={
                    "name": name,
                    "quota_daily": quota_daily,
                    "rate_per_s": 10_000,
                    "burst": 10_000,
                },
                headers=bearer(self.admin_key),
            )
        assert r.status_code == 201, r.text
        body = r.json()
        return body["tenant"]["id"], body["api_key"]

    def audited(self, tenant_id: str) -> set[str]:
        """Request ids of the tenant's audit records in PostgreSQL."""
        if self._engine is None:
            self._engine = create_engine(self.database_url)
        with self._engine.connect() as conn:
            q = select(AuditRow.request_id).where(AuditRow.tenant_id == tenant_id)
            return {row[0] for row in conn.execute(q)}

    def wait_audited(self, tenant_id: str, wanted: set[str], timeout: float = 20.0) -> set[str]:
        """Poll (the recorder writes batches every 0.5 s) until ``wanted`` is audited; the
        request ids still missing at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            missing = wanted - self.audited(tenant_id)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.5)

    def restart(self, instance: Instance) -> None:
        """The documented rolling step (docs/deploy.md): start a stopped instance, wait for its
        /readyz, then for the rendered upstream's ``fail_timeout``: until it has passed, nginx may
        still hold the instance's refused connections against it and send it nothing."""
        instance.start()
        instance.wait_ready()
        m = re.search(r"fail_timeout=(\d+)s", self.files[SITE_TLS])
        assert m, f"the rendered {SITE_TLS} has no fail_timeout"
        time.sleep(int(m[1]) + 1)  # nginx's clock has one-second steps

    def logs(self) -> str:
        return "\n".join(s.tail() for s in self.services)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        for service in self.services:  # all drain at once, then each is waited for
            service.send(signal.SIGTERM)
        for service in reversed(self.services):
            service.stop()


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def bring_up(base: Path, database_url: str, redis_url: str) -> Stack:
    """Render, migrate (both units' ExecStartPre at once), start both instances and nginx."""
    first = free_port_pair()
    files = render(base, first)
    for name in ("data", "logs", "acme-webroot"):
        (base / name).mkdir()
    ca = TestCa()
    live = base / "letsencrypt" / "live" / DOMAIN
    ca.issue([DOMAIN]).write(live / "fullchain.pem", live / "privkey.pem")

    rendered_env = env_file(files[ENV_FILE])
    assert rendered_env["NLUSERVE_WORKERS"] == str(WORKERS)
    admin_key = generate()[1]  # what `nluserve deploy admin-key` prints
    common = {k: v for k, v in os.environ.items() if not k.startswith("NLUSERVE_")}
    common.update(rendered_env)
    # The secrets and shared stores the env file leaves as placeholders for the operator.
    common.update(
        NLUSERVE_DATABASE_URL=database_url,
        NLUSERVE_REDIS_URL=redis_url,
        NLUSERVE_KEY_PEPPER=secrets.token_hex(32),
        NLUSERVE_ADMIN_KEY=admin_key,
        NLUSERVE_MODELS=MODELS,
        NLUSERVE_LOG_LEVEL="warning",
    )
    unit = files[UNIT]
    assert f"TimeoutStopSec={TIMEOUT_STOP_S:g}\n" in unit
    nginx = Nginx(base, files, http_port=free_port(), https_port=free_port())
    stack = Stack(base, files, ca, nginx, [], database_url, admin_key)
    try:
        envs = []
        for port in (first, first + 1):
            env = {**common, "NLUSERVE_PORT": str(port)}
            env["NLUSERVE_DATA_DIR"] = str(base / f"data-{port}")
            envs.append(env)
        # Both units start together: their ExecStartPre migrations run at once under flock.
        migrations = [
            subprocess.Popen(
                unit_command(unit, "ExecStartPre"),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for env in envs
        ]
        try:
            for proc in migrations:
                out, _ = proc.communicate(timeout=120)
                assert proc.returncode == 0, f"ExecStartPre failed:\n{out}"
        finally:
            for proc in migrations:
                proc.kill()  # a no-op for those that finished
                proc.wait(timeout=10)
        for port, env in zip((first, first + 1), envs, strict=True):
            instance = Instance(port, unit_command(unit, "ExecStart"), env, base / f"{port}.log")
            stack.instances.append(instance)
            stack.services.append(instance.service)
            instance.start()
        nginx.configure(base / "letsencrypt")
        stack.services.append(nginx.service)
        nginx.start()
        for instance in stack.instances:
            instance.wait_ready()
        wait_until("nginx", lambda: stack_ready(stack), 30)
    except BaseException:
        stack.close()
        raise
    return stack


def stack_ready(stack: Stack) -> bool:
    assert stack.nginx.service.running(), stack.nginx.service.tail()
    try:
        with stack.client() as client:
            return client.get("/readyz").status_code == 200
    except httpx.HTTPError:
        return False
