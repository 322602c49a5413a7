"""One deployment for the whole package: nginx + TLS -> 2 x nluserve (gunicorn) -> Redis, PostgreSQL.

Started once (the slow part) and stopped at the end, every process group with it. Tests create
their own tenants, so they do not depend on each other's order; a test that stops or kills a
process leaves the stack ready again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.deploy.conftest import missing_tool
from tests.integration.deploy.e2e.processes import tool
from tests.integration.deploy.e2e.stack import Stack, bring_up
from tests.support.services import (  # noqa: F401  (pytest finds fixtures by name)
    REDIS_BIN,
    PostgresServer,
    RedisServer,
    postgres_server,
)


@pytest.fixture(scope="package")
def stack(postgres_server: PostgresServer) -> Iterator[Stack]:  # noqa: F811
    tool("nginx")
    if not REDIS_BIN.exists():
        missing_tool(f"redis-server ({REDIS_BIN})")
    if not Path("/usr/bin/flock").exists():  # the rendered ExecStartPre serialises with it
        missing_tool("flock (util-linux)")
    # Not pytest's tmp_path: its parents are 0700, and nginx's workers (nobody, when the tests
    # run as root) must read the ACME webroot.
    base = Path(tempfile.mkdtemp(prefix="nlue2e-", dir="/tmp"))
    base.chmod(0o755)
    (base / "redis").mkdir()
    redis = RedisServer(base / "redis")
    try:
        redis.start()
        postgres_server.start()
        database_url = postgres_server.create_database("e2e")
        deployed = bring_up(base, database_url, redis.url)
        try:
            yield deployed
        finally:
            deployed.close()
    finally:
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)
