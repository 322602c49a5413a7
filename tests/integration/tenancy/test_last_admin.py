"""The last active admin tenant cannot be disabled: one click in the console (or one PATCH)
would otherwise lock every administrator out until an operator ran the CLI on the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.tenancy.harness import (
    TEXT,
    Stack,
    assert_problem,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tenancy_settings(tmp_path / "data"))


def test_the_last_active_admin_tenant_cannot_be_disabled(stack: Stack) -> None:
    root, root_key = stack.tenant("root", admin=True)
    acme, _ = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.patch(
                f"/admin/tenants/{root.id}", json={"status": "disabled"}, headers=bearer(root_key)
            )
            problem = assert_problem(r, 422, "validation-error")
            assert "last active admin tenant" in problem["detail"]
            assert stack.tenancy.find(root.id).status == "active"
            # The key still works, and an ordinary tenant can still be disabled.
            r = await client.post(
                "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(root_key)
            )
            assert r.status_code == 200, r.text
            r = await client.patch(
                f"/admin/tenants/{acme.id}", json={"status": "disabled"}, headers=bearer(root_key)
            )
            assert r.status_code == 200, r.text

            # With a second active admin tenant, either may be disabled, but not both.
            spare, spare_key = stack.tenant("spare", admin=True)
            r = await client.patch(
                f"/admin/tenants/{root.id}", json={"status": "disabled"}, headers=bearer(spare_key)
            )
            assert r.status_code == 200, r.text
            r = await client.patch(
                f"/admin/tenants/{spare.id}", json={"status": "disabled"}, headers=bearer(spare_key)
            )
            assert_problem(r, 422, "validation-error")
            assert stack.tenancy.find(spare.id).status == "active"

    asyncio.run(scenario())
