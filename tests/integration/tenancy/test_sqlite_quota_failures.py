"""A SQLite quota store that fails (a damaged file, a full disk) refuses with 503, never a 500."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest

from nluserve.quota.base import Policy, QuotaUnavailable
from nluserve.quota.sqlite import SqliteQuotaStore
from tests.integration.tenancy.harness import (
    TEXT,
    assert_problem,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)

PREDICT = "/v1/models/general/predict"
POLICY = Policy(quota_daily=100, rate_per_s=100.0, burst=100)


def damage(path: Path) -> None:
    """Overwrite the file's header, as a bad disk or a stray write would.

    The WAL is checkpointed into the file first and reset, so open connections drop their
    cached pages and read the damaged header on their next transaction."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        assert other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        other.close()
    with path.open("r+b") as f:
        f.write(b"\xff" * 100)


def test_a_damaged_quota_database_answers_503_and_gets_still_answer(tmp_path: Path) -> None:
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    tenant, key = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app, raise_errors=False) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text
            damage(stack.settings.data_dir / "quota.db")
            for _ in range(2):  # the connection is still usable for the next refusal
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
                body = assert_problem(r, 503, "quota-store-unavailable")
                assert body["detail"] == "quota store unavailable (SQLITE_NOTADB)"
                assert r.headers["Retry-After"] == "1"
            # A GET only reads its standing: it answers, without the RateLimit it cannot know.
            r = await client.get("/v1/models", headers=bearer(key))
            assert r.status_code == 200, r.text
            assert "RateLimit" not in r.headers and "RateLimit-Policy" in r.headers
            # The usage report takes a burst token, so it is refused like a prediction.
            r = await client.get("/v1/usage", headers=bearer(key))
            assert_problem(r, 503, "quota-store-unavailable")
            assert r.headers["Retry-After"] == "1"
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["checks"]["quota"] == "unreachable: DatabaseError"
            await stack.app.state.gate.audit.flush()
            assert stack.tenancy.repo.audit_count(tenant.id) == 1  # the refused calls never ran

    asyncio.run(scenario())
    stack.tenancy.repo.close()


def test_a_damaged_store_refuses_decisions_and_give_backs_do_not_raise(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"
    store = SqliteQuotaStore(path)

    async def scenario() -> None:
        taken = await store.acquire("t1", POLICY)
        damage(path)
        with pytest.raises(QuotaUnavailable, match="SQLITE_NOTADB"):
            await store.acquire("t1", POLICY)
        with pytest.raises(QuotaUnavailable, match="SQLITE_NOTADB"):
            await store.peek("t1", POLICY)
        await store.release("t1", taken.day)  # best effort: logged, not raised
        await store.close()

    asyncio.run(scenario())


def test_a_full_disk_refuses_with_unavailable_and_the_store_recovers(tmp_path: Path) -> None:
    store = SqliteQuotaStore(tmp_path / "quota.db")
    conn = store._conn()  # the connection this thread's decisions use
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    # SQLite answers "database or disk is full" (SQLITE_FULL) once the file would need more
    # pages, and rolls the transaction back itself.
    conn.execute(f"PRAGMA max_page_count={pages}")

    async def scenario() -> None:
        for _ in range(2000):  # one page holds far fewer new tenants
            tenant = uuid.uuid4().hex
            try:
                await store.acquire(tenant, POLICY)
            except QuotaUnavailable as exc:
                assert "SQLITE_FULL" in str(exc)
                break
        else:
            raise AssertionError("the capped file never filled up")
        assert (await store.peek(tenant, POLICY)).daily_used == 0  # nothing was counted
        conn.execute("PRAGMA max_page_count=1000000")  # space again
        assert (await store.acquire(tenant, POLICY)).daily_used == 1
        await store.close()

    asyncio.run(scenario())
