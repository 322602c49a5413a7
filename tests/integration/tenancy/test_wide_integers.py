"""Counts and quotas past 2³¹ on PostgreSQL: the columns are BIGINT (migration 0003).

The API and the CLI accept a daily quota up to 10¹², and the audit table takes one row per
call, so a busy fleet passes 2,147,483,647 audit ids within weeks. On PostgreSQL ``Integer`` is
int4; SQLite's INTEGER is 64-bit already, so only PostgreSQL needs the wider type.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from nluserve.db.engine import make_engine
from nluserve.db.migrate import MIGRATIONS, current, upgrade
from nluserve.db.tables import AuditRow, TenantRow
from tests.integration.tenancy.harness import bearer, build_stack, running, tenancy_settings
from tests.support.audit_rows import audit_row

HEAD = "0003"
PAST_INT4 = 3_000_000_000  # > 2**31 - 1


def _tenant_row(name: str, quota: int) -> dict[str, Any]:
    now = datetime(2026, 11, 1, tzinfo=UTC)
    return {
        "id": f"id-{name}",
        "name": name,
        "status": "active",
        "admin": False,
        "quota_daily": quota,
        "rate_per_s": 1.0,
        "burst": 10,
        "scopes": [],
        "created_at": now,
        "updated_at": now,
    }


def _column_types(url: str) -> dict[str, str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT table_name || '.' || column_name, data_type "
                    "FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name IN ('audit', 'tenants')"
                )
            ).all()
            seq = conn.execute(
                text(
                    "SELECT s.data_type FROM information_schema.sequences s "
                    "WHERE s.sequence_schema || '.' || s.sequence_name = "
                    "pg_get_serial_sequence('audit', 'id')"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return {**{name: kind for name, kind in rows}, "audit.id sequence": seq}


def test_counts_and_quotas_are_bigint_on_postgresql_after_migrating(postgres_url: str) -> None:
    assert upgrade(postgres_url) == HEAD
    types = _column_types(postgres_url)
    assert types["audit.id"] == "bigint"
    assert types["audit.id sequence"] == "bigint"
    assert types["tenants.quota_daily"] == "bigint"
    # Per-call values and limits the service bounds well below 2³¹ stay int4.
    assert types["tenants.burst"] == "integer"  # at most 10⁹ (tenancy/limits.py)
    assert types["audit.status"] == "integer"


def test_audit_ids_go_past_int4_on_postgresql(postgres_url: str) -> None:
    upgrade(postgres_url)
    engine = create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("SELECT setval(pg_get_serial_sequence('audit', 'id'), :v)"),
                {"v": 2**31 - 2},
            )
            conn.execute(AuditRow.__table__.insert(), [audit_row(f"r{i}") for i in range(3)])
            ids = conn.execute(text("SELECT id FROM audit ORDER BY id")).scalars().all()
    finally:
        engine.dispose()
    assert ids == [2**31 - 1, 2**31, 2**31 + 1]


def test_a_daily_quota_past_int4_is_created_patched_and_read_back_on_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = tenancy_settings(
        tmp_path / "data", database_url=postgres_url, key_pepper="pepper-for-the-bigint-test"
    )
    stack = build_stack(settings)
    _, admin_key = stack.tenant("root", admin=True)
    cli_made, _ = stack.tenant("cli-made", quota_daily=PAST_INT4)  # the CLI's path
    assert stack.tenancy.find("cli-made").quota_daily == PAST_INT4

    async def scenario() -> None:
        async with running(stack.app, raise_errors=False) as client:
            admin = bearer(admin_key)
            r = await client.post(
                "/admin/tenants", json={"name": "big", "quota_daily": PAST_INT4}, headers=admin
            )
            assert r.status_code == 201, r.text
            assert r.json()["tenant"]["quota_daily"] == PAST_INT4
            r = await client.patch(
                "/admin/tenants/big", json={"quota_daily": 10**12}, headers=admin
            )
            assert r.status_code == 200, r.text
            assert r.json()["quota_daily"] == 10**12
            r = await client.patch(
                f"/admin/tenants/{cli_made.id}", json={"quota_daily": PAST_INT4 + 1}, headers=admin
            )
            assert r.status_code == 200, r.text
            r = await client.get("/admin/tenants/big", headers=admin)
            assert r.status_code == 200, r.text
            assert r.json()["quota_daily"] == 10**12

    asyncio.run(scenario())
    big, patched = stack.tenancy.repo.tenant("big"), stack.tenancy.repo.tenant(cli_made.id)
    assert big is not None and big.quota_daily == 10**12
    assert patched is not None and patched.quota_daily == PAST_INT4 + 1
    stack.tenancy.repo.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def test_a_database_at_0002_keeps_its_rows_and_ids_through_the_upgrade(
    database_url: str,
) -> None:
    assert upgrade(database_url, "0002") == "0002"
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(TenantRow.__table__.insert(), [_tenant_row("old", 2_000_000_000)])
            conn.execute(AuditRow.__table__.insert(), [audit_row(f"old{i}") for i in range(3)])
            before = conn.execute(text("SELECT id, record_id FROM audit ORDER BY id")).all()
        assert upgrade(database_url) == HEAD
        with engine.begin() as conn:
            after = conn.execute(text("SELECT id, record_id FROM audit ORDER BY id")).all()
            assert after == before
            # New rows continue the sequence after the kept ones, past int4 too.
            conn.execute(AuditRow.__table__.insert(), [audit_row("new0")])
            ids = conn.execute(text("SELECT id FROM audit ORDER BY id")).scalars().all()
            assert ids == [*(r[0] for r in before), before[-1][0] + 1]
            conn.execute(
                text("UPDATE tenants SET quota_daily = :q WHERE name = 'old'"), {"q": PAST_INT4}
            )
            quota = conn.execute(text("SELECT quota_daily FROM tenants")).scalar_one()
            assert quota == PAST_INT4
            if engine.dialect.name == "postgresql":
                conn.execute(
                    text("SELECT setval(pg_get_serial_sequence('audit', 'id'), :v)"),
                    {"v": 2**31 + 5},
                )
                conn.execute(AuditRow.__table__.insert(), [audit_row("past-int4")])
                top = conn.execute(text("SELECT MAX(id) FROM audit")).scalar_one()
                assert top == 2**31 + 6
    finally:
        engine.dispose()
    if database_url.startswith("postgresql"):
        types = _column_types(database_url)
        assert (types["audit.id"], types["audit.id sequence"], types["tenants.quota_daily"]) == (
            "bigint",
            "bigint",
            "bigint",
        )


def test_the_downgrade_to_0002_narrows_again_while_everything_fits(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0002")
            conn.commit()
        assert current(engine) == "0002"
    finally:
        engine.dispose()
    if database_url.startswith("postgresql"):
        types = _column_types(database_url)
        assert (types["audit.id"], types["audit.id sequence"], types["tenants.quota_daily"]) == (
            "integer",
            "integer",
            "integer",
        )
    assert upgrade(database_url) == HEAD
