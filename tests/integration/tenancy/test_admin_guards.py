"""Changes to who may administer, checked where an audit of the admin API found holes: a
second admin tenant without a usable key counted as a way back in, two admins revoking each
other at the same moment both succeeded, a database outage answered 500, a NUL in a path or
key name reached PostgreSQL, a jti with a newline "revoked" nothing, token claims of the wrong
type reached a TypeError, and admin bodies converted "yes" into an admin."""

from __future__ import annotations

import asyncio
import threading
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from nluserve.tenancy.limits import InvalidValue
from nluserve.tenancy.service import NotFound, TenancyService
from tests.integration.tenancy.harness import (
    TEXT,
    Stack,
    assert_problem,
    bearer,
    build_stack,
    running,
    sign_eddsa,
    tenancy_settings,
    valid_claims,
)


def test_an_admin_tenant_without_a_usable_key_is_no_way_back_in(stack: Stack) -> None:
    root, root_key = stack.tenant("root", admin=True)
    spare, _ = stack.tenant("spare", admin=True)
    (spare_key,) = stack.tenancy.keys(spare.id)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.delete(
                f"/admin/tenants/{spare.id}/keys/{spare_key.id}", headers=bearer(root_key)
            )
            assert r.status_code == 200, r.text  # root's key still reaches the admin API
            r = await client.patch(
                f"/admin/tenants/{root.id}", json={"status": "disabled"}, headers=bearer(root_key)
            )
            assert "usable key" in assert_problem(r, 422, "validation-error")["detail"]
            r = await client.get("/admin/tenants", headers=bearer(root_key))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())
    assert stack.tenancy.find(root.id).status == "active"


def _at_once(*calls: Any) -> list[BaseException | None]:
    """Run the calls in threads released together; each one's exception or None."""
    barrier = threading.Barrier(len(calls))
    outcomes: list[BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            calls[i]()
        except BaseException as exc:  # reported to the test
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def _race_each_other(tenancy: TenancyService, rounds: int) -> None:
    """Two admin keys revoke each other, two admin tenants disable each other, at once:
    exactly one of each pair may succeed, every round."""
    admins = [tenancy.create_tenant(f"a{i}", admin=True)[0] for i in range(2)]
    for r in range(rounds):
        keys = [tenancy.create_key(admins[0].id, f"r{r}-{i}").record for i in range(2)]
        for old in tenancy.keys(admins[0].id):
            if old.revoked_at is None and old.id not in {k.id for k in keys}:
                tenancy.repo.revoke_key(old.id)
        for other in tenancy.repo.tenants():
            if other.id != admins[0].id and other.admin:
                tenancy.repo.update_tenant(other.id, status="disabled")
        outcomes = _at_once(
            partial(tenancy.revoke_key, keys[1].id), partial(tenancy.revoke_key, keys[0].id)
        )
        assert sum(o is None for o in outcomes) == 1, (r, outcomes)
        assert all(o is None or isinstance(o, InvalidValue) for o in outcomes), outcomes
        usable = [k for k in tenancy.keys(admins[0].id) if k.revoked_at is None]
        assert len(usable) == 1, r

    for r in range(rounds):
        for a in admins:
            tenancy.repo.update_tenant(a.id, status="active")
            if not [k for k in tenancy.keys(a.id) if k.revoked_at is None]:
                tenancy.create_key(a.id, f"again-{r}")
        for other in tenancy.repo.tenants():
            if other.admin and other.id not in {a.id for a in admins}:
                tenancy.repo.update_tenant(other.id, status="disabled")
        outcomes = _at_once(
            partial(tenancy.update, admins[1].id, status="disabled"),
            partial(tenancy.update, admins[0].id, status="disabled"),
        )
        assert sum(o is None for o in outcomes) == 1, (r, outcomes)
        active = [a for a in admins if tenancy.find(a.id).status == "active"]
        assert len(active) == 1, r


def test_admins_acting_at_the_same_moment_cannot_lock_everyone_out_sqlite(
    stack: Stack,
) -> None:
    _race_each_other(stack.tenancy, rounds=8)


def test_admins_acting_at_the_same_moment_cannot_lock_everyone_out_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = tenancy_settings(tmp_path / "data", database_url=postgres_url, key_pepper="p" * 32)
    stack = build_stack(settings)
    try:
        _race_each_other(stack.tenancy, rounds=8)
    finally:
        stack.tenancy.repo.close()


def test_a_database_outage_is_a_503_on_the_routes_that_read_it(
    tmp_path: Path, postgres_url: str, postgres_server: Any
) -> None:
    settings = tenancy_settings(tmp_path / "data", database_url=postgres_url, key_pepper="p" * 32)
    stack = build_stack(settings)
    root, root_key = stack.tenant("root", admin=True)

    async def scenario() -> None:
        async with running(stack.app, raise_errors=False) as client:
            # The key is cached now: authentication no longer needs the database.
            r = await client.get("/admin/tenants", headers=bearer(root_key))
            assert r.status_code == 200, r.text
            postgres_server.stop()
            try:
                for method, path, body in [
                    ("POST", "/v1/auth/token", None),
                    ("GET", "/v1/usage", None),
                    ("GET", "/admin/tenants", None),
                    ("GET", f"/admin/tenants/{root.id}/keys", None),
                    ("POST", "/admin/tenants", {"name": "late"}),
                    ("GET", "/admin/usage", None),
                ]:
                    r = await client.request(method, path, json=body, headers=bearer(root_key))
                    problem = assert_problem(r, 503, "store-unavailable")
                    assert r.headers["retry-after"] == "2", path
                    assert "database" in problem["detail"], path
            finally:
                postgres_server.start()

    try:
        asyncio.run(scenario())
    finally:
        stack.tenancy.repo.close()


def test_nul_and_control_characters_never_reach_the_database_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = tenancy_settings(tmp_path / "data", database_url=postgres_url, key_pepper="p" * 32)
    stack = build_stack(settings)
    root, root_key = stack.tenant("root", admin=True)

    async def scenario() -> None:
        async with running(stack.app) as client:
            auth = bearer(root_key)
            for path in ["/admin/tenants/%00", "/admin/tenants/a%00b", "/admin/tenants/%00/keys"]:
                assert_problem(await client.get(path, headers=auth), 404, "not-found")
            r = await client.patch("/admin/tenants/%00", json={"burst": 2}, headers=auth)
            assert_problem(r, 404, "not-found")
            r = await client.delete(f"/admin/tenants/{root.id}/keys/%00", headers=auth)
            assert_problem(r, 404, "not-found")
            r = await client.get("/admin/usage", params={"tenant": "\x00"}, headers=auth)
            assert_problem(r, 404, "not-found")
            for name in ["a\x00b", "line\nbreak"]:
                r = await client.post(
                    f"/admin/tenants/{root.id}/keys", json={"name": name}, headers=auth
                )
                assert "printable" in assert_problem(r, 422, "validation-error")["detail"]
            assert len(stack.tenancy.keys(root.id)) == 1

    try:
        asyncio.run(scenario())
    finally:
        stack.tenancy.repo.close()


def test_a_jti_with_a_trailing_newline_is_not_reported_as_revoked(stack: Stack) -> None:
    with pytest.raises(NotFound):
        stack.tenancy.revoke_token("0123456789abcdef0123456789abcdef\n")
    assert stack.tenancy.repo.revoked_jtis() == set()
    assert stack.tenancy.revoke_token("0123456789abcdef0123456789abcdef") == (
        "0123456789abcdef0123456789abcdef"
    )


@pytest.mark.parametrize(
    ("claim", "value"),
    [("key", ["a"]), ("key", {"a": 1}), ("sub", 7), ("jti", ["x"]), ("scope", ["*"])],
)
def test_claims_of_the_wrong_type_are_a_401_even_when_signed(
    stack: Stack, claim: str, value: object
) -> None:
    tenant, _ = stack.tenant("acme")
    claims = {**valid_claims(stack.settings, tenant.id, None), claim: value}
    assert "must be strings" in _refused_token(stack, claims)


def test_a_token_subject_is_a_tenant_id_never_a_name(stack: Stack) -> None:
    tenant, _ = stack.tenant("acme")
    claims = valid_claims(stack.settings, tenant.name, None)
    assert "unknown tenant" in _refused_token(stack, claims)


def _refused_token(stack: Stack, claims: dict[str, Any]) -> str:
    """Sign ``claims`` with the server's own key (a leaked one); the 401's detail."""
    kid, key = stack.private_key()
    token = sign_eddsa({"alg": "EdDSA", "typ": "at+jwt", "kid": kid}, claims, key)

    async def scenario() -> str:
        async with running(stack.app) as client:
            r = await client.post(
                "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(token)
            )
            return str(assert_problem(r, 401, "unauthorized")["detail"])

    return asyncio.run(scenario())


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "admin": "yes"},
        {"name": "x", "admin": 1},
        {"name": "x", "quota_daily": "10"},
        {"name": "x", "quota_daily": True},
        {"name": "x", "burst": 2.0},
        {"name": "x", "scopes": "general"},
    ],
)
def test_admin_bodies_are_strict_about_json_types(stack: Stack, body: dict[str, Any]) -> None:
    _, root_key = stack.tenant("root", admin=True)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post("/admin/tenants", json=body, headers=bearer(root_key))
            assert_problem(r, 422, "validation-error")
            # The same types that are right still work, a whole-number rate included.
            r = await client.post(
                "/admin/tenants",
                json={"name": "ok", "admin": False, "quota_daily": 10, "rate_per_s": 2},
                headers=bearer(root_key),
            )
            assert r.status_code == 201, r.text
            assert r.json()["tenant"]["rate_per_s"] == 2.0

    asyncio.run(scenario())
    with pytest.raises(NotFound):
        stack.tenancy.find("x")


def test_a_schema_call_refused_for_its_second_unit_reports_what_is_left(stack: Stack) -> None:
    _, key = stack.tenant("acme", quota_daily=2)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(
                "/v1/models/general/predict", json={"text": TEXT}, headers=bearer(key)
            )
            assert r.status_code == 200, r.text
            body = {"text": "张三患肺炎", "schema": {"name": None, "dis": None}}
            r = await client.post("/api/predict", json=body, headers=bearer(key))
            problem = assert_problem(r, 429, "quota-exceeded")
            assert "needs 2 units" in problem["detail"]
            assert '"daily";r=1;' in r.headers["ratelimit"]
            r = await client.get("/v1/models", headers=bearer(key))
            assert '"daily";r=1;' in r.headers["ratelimit"]

    asyncio.run(scenario())
