"""Real Redis and PostgreSQL for the tenancy tests (see tests/support/services.py)."""

from tests.support.services import (  # noqa: F401  (pytest finds fixtures by name)
    persistent_redis_server,
    postgres_server,
    postgres_url,
    redis_server,
)
