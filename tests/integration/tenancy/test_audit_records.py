"""Audit rows are keyed by the server, not by the client's X-Request-ID; migrations match the models."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from nluserve.db.migrate import upgrade
from nluserve.db.tables import AuditRow, Base
from tests.integration.tenancy.harness import (
    Stack,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)
from tests.support.audit_rows import audit_row


def _audit_rows(stack: Stack, tenant_id: str) -> list[Any]:
    """The tenant's audit rows, read straight from the table; closes the repository."""
    with stack.tenancy.repo.engine.connect() as conn:
        rows = conn.execute(
            AuditRow.__table__.select().where(AuditRow.tenant_id == tenant_id)
        ).all()
    stack.tenancy.repo.close()
    return list(rows)


def test_a_reused_request_id_does_not_hide_calls_from_the_audit(tmp_path: Path) -> None:
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    tenant, key = stack.tenant("acme")
    headers = {**bearer(key), "X-Request-ID": "same-id-every-time"}

    async def scenario() -> None:
        async with running(stack.app) as client:
            for _ in range(3):
                r = await client.post("/v1/ner", json={"text": "张三在北京"}, headers=headers)
                assert r.status_code == 200, r.text
                assert r.headers["x-request-id"] == "same-id-every-time"

    asyncio.run(scenario())
    rows = _audit_rows(stack, tenant.id)
    assert len(rows) == 3
    assert {r.request_id for r in rows} == {"same-id-every-time"}
    assert len({r.record_id for r in rows}) == 3


def test_an_answer_that_fails_to_build_is_audited_as_the_500_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nluserve.api.routes import predict

    def broken(*args: object) -> bytes:
        raise RuntimeError("a rendering bug")

    monkeypatch.setattr(predict, "prediction_json", broken)
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    tenant, key = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app, raise_errors=False) as client:
            r = await client.post("/v1/ner", json={"text": "张三在北京"}, headers=bearer(key))
            assert r.status_code == 500
            assert r.headers["content-type"] == "application/problem+json"
            await stack.app.state.gate.audit.flush()

    asyncio.run(scenario())
    rows = _audit_rows(stack, tenant.id)
    assert [r.status for r in rows] == [500]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def test_migrations_produce_exactly_the_models_schema(database_url: str) -> None:
    upgrade(database_url)
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_audit_rows_written_before_record_ids_survive_the_upgrade(database_url: str) -> None:
    assert upgrade(database_url, "0001") == "0001"
    engine = create_engine(database_url)
    row = audit_row("old-call")
    del row["record_id"]  # a column that 0001 does not have
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO audit (request_id, ts, tenant_id, key_id, route, model, task, "
                    "n_texts, chars, status, latency_ms, text) VALUES (:request_id, :ts, "
                    ":tenant_id, :key_id, :route, :model, :task, :n_texts, :chars, :status, "
                    ":latency_ms, :text)"
                ),
                row,
            )
        assert upgrade(database_url) == "0003"
        with engine.begin() as conn:
            got = conn.execute(text("SELECT record_id, request_id, chars FROM audit")).all()
            assert [tuple(r) for r in got] == [("old-call", "old-call", 5)]
            # New rows get fresh ids from the sequence, after the copied ones.
            conn.execute(
                AuditRow.__table__.insert(),
                [{**row, "record_id": f"r{i}", "request_id": "old-call"} for i in range(2)],
            )
            assert conn.execute(text("SELECT COUNT(DISTINCT id) FROM audit")).scalar() == 3
    finally:
        engine.dispose()
