"""The last active admin tenant cannot be disabled: one click in the console (or one PATCH)
would otherwise lock every administrator out until an operator ran the CLI on the server."""

from __future__ import annotations

import asyncio

from tests.integration.tenancy.harness import (
    TEXT,
    Stack,
    assert_problem,
    bearer,
    running,
)


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

            # An admin makes a second admin tenant over the API; either may then be
            # disabled, but not both.
            r = await client.post(
                "/admin/tenants", json={"name": "spare", "admin": True}, headers=bearer(root_key)
            )
            assert r.status_code == 201, r.text
            assert r.headers["cache-control"] == "no-store"  # it carries a new key
            assert r.json()["tenant"]["admin"] is True
            spare, spare_key = stack.tenancy.find("spare"), r.json()["api_key"]
            r = await client.post(
                "/admin/tenants", json={"name": "plain"}, headers=bearer(root_key)
            )
            assert r.json()["tenant"]["admin"] is False
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


def test_the_last_usable_admin_key_cannot_be_revoked(stack: Stack) -> None:
    root, root_key = stack.tenant("root", admin=True)
    first = stack.tenancy.keys(root.id)[0]

    async def scenario() -> None:
        async with running(stack.app) as client:
            path = f"/admin/tenants/{root.id}/keys/{first.id}"
            problem = assert_problem(await client.delete(path, headers=bearer(root_key)), 422)
            assert "last usable key" in problem["detail"]
            # With a second admin key, the first one can go; then the second is the last.
            second = stack.tenancy.create_key(root.id, "spare")
            r = await client.delete(path, headers=bearer(second.api_key))
            assert r.status_code == 200, r.text
            r = await client.delete(
                f"/admin/tenants/{root.id}/keys/{second.record.id}",
                headers=bearer(second.api_key),
            )
            assert "last usable key" in assert_problem(r, 422)["detail"]

    asyncio.run(scenario())
