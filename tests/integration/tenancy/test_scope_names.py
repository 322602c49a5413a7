"""A scope must name something this deployment serves: typos are refused, not stored."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nluserve.tenancy.limits import InvalidValue, check_scopes
from tests.integration.tenancy.harness import (
    assert_problem,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)


def test_check_scopes_accepts_models_tasks_and_star_and_names_the_valid_ones() -> None:
    served = frozenset({"general", "sentiment"})
    check_scopes(["general", "ner", "classification", "*"], served)
    check_scopes(["anything"], None)  # not checked where nobody knows what is served
    try:
        check_scopes(["general", "generl"], served)
    except InvalidValue as exc:
        assert "'generl'" in str(exc)
        assert "general, sentiment" in str(exc) and "ner, classification" in str(exc)
    else:
        raise AssertionError("a scope naming no served model was accepted")


def test_admin_api_refuses_a_scope_naming_no_served_model(tmp_path: Path) -> None:
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    _, admin_key = stack.tenant("ops", admin=True)

    async def scenario() -> None:
        async with running(stack.app) as client:
            headers = bearer(admin_key)
            r = await client.post(
                "/admin/tenants", json={"name": "acme", "scopes": ["generl"]}, headers=headers
            )
            body = assert_problem(r, 422, "validation-error")
            assert "generl" in body["detail"] and "general" in body["detail"]
            assert stack.tenancy.repo.tenant("acme") is None  # nothing half-made

            served = sorted(stack.app.state.inference.models)[0]
            r = await client.post(
                "/admin/tenants", json={"name": "acme", "scopes": [served, "ner"]}, headers=headers
            )
            assert r.status_code == 201, r.text
            r = await client.patch(
                "/admin/tenants/acme", json={"scopes": ["medicl"]}, headers=headers
            )
            assert_problem(r, 422, "validation-error")
            tenant = stack.tenancy.repo.tenant("acme")
            assert tenant is not None and tenant.scopes == (served, "ner")  # unchanged

    asyncio.run(scenario())
