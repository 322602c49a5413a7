"""Usage days are UTC days, whatever time zone the PostgreSQL server is set to."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text

from nluserve.db.migrate import upgrade
from nluserve.db.repo import Repository
from nluserve.tenancy.values import AuditRecord
from tests.support.services import PostgresServer


def _record(tenant: str, ts: datetime) -> AuditRecord:
    return AuditRecord(
        uuid.uuid4().hex, ts, tenant, "k", "/v1/ner", "general", "ner", 1, 4, 200, 1.0
    )


def test_usage_days_are_utc_days_whatever_the_postgres_time_zone(
    postgres_server: PostgresServer,
) -> None:
    postgres_server.start()
    url = postgres_server.create_database("usage_tz")
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        name = conn.execute(text("select current_database()")).scalar()
        conn.execute(text(f"alter database {name} set timezone to 'Asia/Shanghai'"))
    engine.dispose()
    upgrade(url)
    repo = Repository(url)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    # 20:00 UTC yesterday is 04:00 today in Shanghai.
    repo.insert_audit([_record("t1", today - timedelta(hours=4))])
    [row] = repo.usage("t1", days=2)
    assert row.day == (today - timedelta(days=1)).strftime("%Y-%m-%d")
    repo.close()
