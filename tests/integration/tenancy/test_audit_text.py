"""Raw request text stays out of the audit log unless the operator turns NLUSERVE_AUDIT_TEXT on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.tenancy.harness import bearer, build_stack, running, tenancy_settings

SECRET_TEXT = "张三的病历号是甲乙丙丁戊己庚辛"


@pytest.mark.parametrize("audit_text", [False, True])
def test_audit_stores_raw_text_only_when_enabled(tmp_path: Path, audit_text: bool) -> None:
    stack = build_stack(tenancy_settings(tmp_path / "data", audit_text=audit_text))
    tenant, key = stack.tenant("acme")
    texts = [SECRET_TEXT, "李四在上海"]

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(
                "/v1/models/general/predict", json={"texts": texts}, headers=bearer(key)
            )
            assert r.status_code == 200, r.text
            r = await client.post(
                "/v1/ner", json={"text": SECRET_TEXT, "model": "general"}, headers=bearer(key)
            )
            assert r.status_code == 200, r.text
        # Leaving the lifespan flushes the audit buffer.

    asyncio.run(scenario())
    stored = stack.audit_texts(tenant.id)
    assert len(stored) == 2
    if audit_text:
        assert sorted(t or "" for t in stored) == sorted(["\n".join(texts), SECRET_TEXT])
    else:
        assert stored == [None, None]
    stack.tenancy.repo.close()
    raw = b"".join(p.read_bytes() for p in stack.settings.data_dir.rglob("*") if p.is_file())
    assert (SECRET_TEXT.encode() in raw) is audit_text
