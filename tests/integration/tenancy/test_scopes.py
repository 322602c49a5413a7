"""Scopes limit which models a tenant may call, on every route; tenants never see each other."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nluserve.tenancy import keys as keyfmt
from tests.integration.tenancy.harness import (
    TEXT,
    Stack,
    assert_problem,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)
from tests.support.gazetteer import gazetteer_model

MEDICAL_TEXT = "患者发热，疑似肺炎"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    # The default NER model is one the scoped tenant may not call.
    return build_stack(tenancy_settings(tmp_path / "data", default_ner_model="medical"))


# (method path, body, status for a tenant scoped to ["general"])
SCOPED_CALLS: list[tuple[str, dict[str, Any], int]] = [
    ("/v1/models/general/predict", {"text": TEXT}, 200),
    ("/v1/models/medical/predict", {"text": MEDICAL_TEXT}, 403),
    ("/v1/ner", {"text": TEXT, "model": "general"}, 200),
    ("/v1/ner", {"text": MEDICAL_TEXT}, 403),  # the default model, medical
    ("/v1/ner", {"text": MEDICAL_TEXT, "model": "medical"}, 403),
    ("/predict/ner", {"text": MEDICAL_TEXT}, 403),  # compatibility: the default model
    ("/api/predict", {"text": TEXT, "schema": {"name": None}}, 200),  # answered by general
    ("/api/predict", {"text": MEDICAL_TEXT, "schema": {"dis": None}}, 403),  # answered by medical
]


@pytest.mark.parametrize(("path", "body", "status"), SCOPED_CALLS)
def test_scope_is_enforced_on_every_route(
    stack: Stack, path: str, body: dict[str, Any], status: int
) -> None:
    tenant, key = stack.tenant("scoped", scopes=("general",))
    _, unscoped = stack.tenant("unscoped")

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(path, json=body, headers=bearer(key))
            if status == 403:
                problem = assert_problem(r, 403, "out-of-scope")
                assert "may not call model" in problem["detail"]
                assert await stack.quota_used(tenant) == 0
            else:
                assert r.status_code == status, r.text
            # The same call with an unscoped key of the same server is answered.
            r = await client.post(path, json=body, headers=bearer(unscoped))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_tokens_carry_the_tenants_scope(stack: Stack) -> None:
    _, key = stack.tenant("scoped", scopes=("general",))

    async def scenario() -> None:
        async with running(stack.app) as client:
            token = (await client.post("/v1/auth/token", headers=bearer(key))).json()[
                "access_token"
            ]
            r = await client.post(
                "/v1/models/medical/predict", json={"text": TEXT}, headers=bearer(token)
            )
            assert_problem(r, 403, "out-of-scope")
            r = await client.post(
                "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(token)
            )
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_a_mixed_schema_call_refused_for_scope_consumes_nothing(stack: Stack) -> None:
    tenant, key = stack.tenant("scoped", scopes=("general",))

    async def scenario() -> None:
        async with running(stack.app) as client:
            body = {
                "text": "张三发热",
                "schema": {"name": None, "dis": None},
            }  # general, then medical
            r = await client.post("/api/predict", json=body, headers=bearer(key))
            assert_problem(r, 403, "out-of-scope")
            assert await stack.quota_used(tenant) == 0

    asyncio.run(scenario())


ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/admin/tenants", None),
    ("POST", "/admin/tenants", {"name": "sneaky"}),
    ("GET", "/admin/tenants/{b}", None),
    ("PATCH", "/admin/tenants/{b}", {"status": "disabled"}),
    ("PATCH", "/admin/tenants/{a}", {"quota_daily": 10**9, "scopes": ["*"]}),
    ("GET", "/admin/tenants/{b}/keys", None),
    ("POST", "/admin/tenants/{b}/keys", {"name": "mine-now"}),
    ("DELETE", "/admin/tenants/{b}/keys/{b_key}", None),
    ("DELETE", "/admin/tenants/{a}/keys/{b_key}", None),
    ("GET", "/admin/usage", None),
    ("GET", "/admin/usage?tenant={b}", None),
]


@pytest.mark.parametrize(("method", "template", "body"), ADMIN_CALLS)
def test_a_tenant_cannot_reach_another_through_the_admin_api(
    stack: Stack, method: str, template: str, body: dict[str, Any] | None
) -> None:
    a, a_key = stack.tenant("tenant-a", scopes=("general",))
    b, b_key = stack.tenant("tenant-b")
    b_key_id = keyfmt.parse(b_key)
    path = template.format(a=a.id, b=b.id, b_key=b_key_id)

    async def scenario() -> None:
        async with running(stack.app) as client:
            token = (await client.post("/v1/auth/token", headers=bearer(a_key))).json()[
                "access_token"
            ]
            for credential in (a_key, token):
                r = await client.request(method, path, json=body, headers=bearer(credential))
                problem = assert_problem(r, 403, "forbidden")
                assert problem["title"] == "Admin only"
            # Nothing changed: B still works, A's limits and B's keys are as they were.
            r = await client.post(
                "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(b_key)
            )
            assert r.status_code == 200, r.text
            assert stack.tenancy.find(b.id).status == "active"
            assert stack.tenancy.find(a.id) == a
            assert [k.id for k in stack.tenancy.keys(b.id)] == [b_key_id]
            assert stack.tenancy.repo.tenant("sneaky") is None

    asyncio.run(scenario())


def test_admin_cannot_revoke_a_key_under_the_wrong_tenant(stack: Stack) -> None:
    _, admin_key = stack.tenant("root", admin=True)
    a, _ = stack.tenant("tenant-a")
    b, b_key = stack.tenant("tenant-b")
    b_key_id = keyfmt.parse(b_key)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.delete(
                f"/admin/tenants/{a.id}/keys/{b_key_id}", headers=bearer(admin_key)
            )
            assert_problem(r, 404, "not-found")
            # The same 404 as a key that does not exist, so key ids cannot be probed.
            r = await client.delete(
                f"/admin/tenants/{a.id}/keys/nosuchkey000", headers=bearer(admin_key)
            )
            assert_problem(r, 404, "not-found")
            r = await client.post(
                "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(b_key)
            )
            assert r.status_code == 200, r.text
            assert [k.revoked_at for k in stack.tenancy.keys(b.id)] == [None]
            r = await client.delete(
                f"/admin/tenants/{b.id}/keys/{b_key_id}", headers=bearer(admin_key)
            )
            assert r.status_code == 200, r.text
            assert r.json()["revoked_at"] is not None

    asyncio.run(scenario())


def test_usage_returns_only_the_callers_own_rows(stack: Stack) -> None:
    a, a_key = stack.tenant("tenant-a")
    b, b_key = stack.tenant("tenant-b")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with running(stack.app) as client:
            for key, n in ((a_key, 2), (b_key, 3)):
                for _ in range(n):
                    r = await client.post(
                        "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(key)
                    )
                    assert r.status_code == 200, r.text
            r = await client.post(
                "/v1/models/medical/predict", json={"text": MEDICAL_TEXT}, headers=bearer(b_key)
            )
            assert r.status_code == 200, r.text
            await stack.app.state.gate.audit.flush()
            mine = await client.get("/v1/usage", headers=bearer(a_key))
            theirs = await client.get("/v1/usage?tenant=" + b.id, headers=bearer(a_key))
            assert mine.status_code == 200 and theirs.status_code == 200
            return mine.json(), theirs.json()

    mine, theirs = asyncio.run(scenario())
    assert mine["tenant"] == "tenant-a"
    assert {row["tenant_id"] for row in mine["rows"]} == {a.id}
    assert sum(row["calls"] for row in mine["rows"]) == 2
    assert {row["model"] for row in mine["rows"]} == {"general"}
    assert theirs == mine  # a query parameter naming another tenant changes nothing


def test_a_model_outside_the_scope_is_neither_listed_nor_described(stack: Stack) -> None:
    _, key = stack.tenant("scoped", scopes=("general",))

    async def scenario() -> None:
        async with running(stack.app) as client:
            listed = await client.get("/v1/models", headers=bearer(key))
            assert [m["name"] for m in listed.json()["models"]] == ["general"]
            r = await client.get("/v1/models/medical", headers=bearer(key))
            assert_problem(r, 403, "out-of-scope")
            r = await client.get("/v1/models/general", headers=bearer(key))
            assert r.status_code == 200 and r.json()["name"] == "general"

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/admin/tenants", {"name": "big", "quota_daily": 10**23}, "quota_daily"),
        ("POST", "/admin/tenants", {"name": "big", "burst": 10**20}, "burst"),
        ("POST", "/admin/tenants", {"name": "tiny", "rate_per_s": 1e-300}, "rate_per_s"),
        ("POST", "/admin/tenants", {"name": "typo", "quota": 5}, "quota"),
        ("PATCH", "/admin/tenants/{b}", {"rate_per_s": 1e300}, "rate_per_s"),
        ("PATCH", "/admin/tenants/{b}", {"name": "renamed"}, "name"),
        ("POST", "/admin/tenants/{b}/keys", {"expires_days": 3_000_000}, "expires_days"),
        ("POST", "/admin/tenants/{b}/keys", {"expires_days": 1e10}, "expires_days"),
    ],
)
def test_admin_numbers_out_of_range_and_unknown_fields_are_422(
    stack: Stack, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    _, admin_key = stack.tenant("root", admin=True)
    tenant_b, _ = stack.tenant("beta")

    async def scenario() -> None:
        async with running(stack.app) as client:
            url = path.format(b=tenant_b.id)
            r = await client.request(method, url, json=body, headers=bearer(admin_key))
            problem = assert_problem(r, 422, "validation-error")
            assert field in {e["field"] for e in problem["errors"]}
            # Infinity is not JSON, but Python's parser reads it: still a 422, never a 500
            raw = b'{"name": "inf", "rate_per_s": Infinity}'
            r = await client.post(
                "/admin/tenants",
                content=raw,
                headers={**bearer(admin_key), "content-type": "application/json"},
            )
            assert_problem(r, 422, "validation-error")

    asyncio.run(scenario())


def test_unknown_names_and_labels_list_only_what_the_caller_may_call(stack: Stack) -> None:
    _, key = stack.tenant("scoped", scopes=("general",))

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(
                "/v1/models/nope/predict", json={"text": TEXT}, headers=bearer(key)
            )
            detail = assert_problem(r, 404, "unknown-model")["detail"]
            assert "general" in detail and "medical" not in detail
            r = await client.post(
                "/api/predict", json={"text": TEXT, "schema": {"nope": None}}, headers=bearer(key)
            )
            valid = assert_problem(r, 422, "unknown-label")["valid_labels"]
            assert "address" in valid and "dis" not in valid  # general's, not medical's

    asyncio.run(scenario())


def test_a_schema_key_two_models_know_goes_to_the_one_in_scope(tmp_path: Path) -> None:
    words = {"name": ["张三"], "address": ["北京"]}
    stack = build_stack(
        tenancy_settings(tmp_path / "data"),
        {
            "general": gazetteer_model(words, 64, name="general"),
            "news": gazetteer_model(words, 64, name="news"),
        },
    )
    _, key = stack.tenant("news-only", scopes=("news",))

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(
                "/api/predict", json={"text": TEXT, "schema": {"name": None}}, headers=bearer(key)
            )
            assert r.status_code == 200, r.text
            assert r.json()["result"]["name"] == ["张三"]

    asyncio.run(scenario())
