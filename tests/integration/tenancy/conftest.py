"""Real Redis and PostgreSQL for the tenancy tests (see tests/support/services.py), and the
default stack."""

from pathlib import Path

import pytest

from tests.integration.tenancy.harness import Stack, build_stack, tenancy_settings
from tests.support.services import (  # noqa: F401  (pytest finds fixtures by name)
    persistent_redis_server,
    postgres_server,
    postgres_url,
    redis_server,
)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """A migrated SQLite database, the tenancy service and the app (test files may shadow it)."""
    return build_stack(tenancy_settings(tmp_path / "data"))
