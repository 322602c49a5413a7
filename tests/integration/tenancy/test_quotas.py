"""Quotas through the app: only admitted calls count; 429s say which policy and when to retry."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from nluserve.tenancy import keys as keyfmt
from tests.integration.tenancy.harness import (
    CACHE_S,
    TEXT,
    Stack,
    assert_problem,
    bearer,
    build_stack,
    daily_remaining,
    running,
    tenancy_settings,
)

PREDICT = "/v1/models/general/predict"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return build_stack(tenancy_settings(tmp_path / "data", max_texts=4))


async def _remaining(client: httpx.AsyncClient, key: str) -> int:
    """The daily allowance left, from a GET (which peeks and counts nothing)."""
    r = await client.get("/v1/usage", headers=bearer(key))
    assert r.status_code == 200, r.text
    return daily_remaining(r)


def test_refused_calls_cost_nothing_only_admitted_ones_count(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", quota_daily=10, scopes=("general",))
    revoked = stack.tenancy.create_key(tenant.id, "old")
    stack.tenancy.revoke_key(revoked.record.id, tenant.id)
    expired = stack.tenancy.create_key(tenant.id, "gone", expires_days=1e-7).api_key

    refused: list[tuple[str, str, dict[str, object], int]] = [
        (revoked.api_key, PREDICT, {"text": TEXT}, 401),
        (expired, PREDICT, {"text": TEXT}, 401),
        (key, "/v1/models/medical/predict", {"text": TEXT}, 403),  # out of scope
        (key, PREDICT, {"text": "   "}, 422),  # empty text
        (key, PREDICT, {"texts": [TEXT] * 5}, 422),  # too many texts
        (key, PREDICT, {"text": TEXT, "labels": ["no-such-label"]}, 422),
        (key, PREDICT, {"text": TEXT, "extra": 1}, 422),  # schema violation
        (key, "/v1/models/nope/predict", {"text": TEXT}, 404),
    ]

    async def scenario() -> None:
        async with running(stack.app) as client:
            assert await _remaining(client, key) == 10
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text
            assert daily_remaining(r) == 9
            for credential, path, body, status in refused:
                r = await client.post(path, json=body, headers=bearer(credential))
                assert_problem(r, status)
                assert "RateLimit" not in r.headers or daily_remaining(r) == 9
            assert await _remaining(client, key) == 9
            assert await stack.quota_used(tenant) == 1
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200 and daily_remaining(r) == 8
            assert await stack.quota_used(tenant) == 2

    asyncio.run(scenario())


def test_daily_quota_429_names_the_policy_and_when_to_retry(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", quota_daily=2)

    async def scenario() -> None:
        async with running(stack.app) as client:
            for left in (1, 0):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
                assert r.status_code == 200 and daily_remaining(r) == left
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            body = assert_problem(r, 429, "quota-exceeded")
            assert body["policy"] == "daily"
            assert 1 <= int(r.headers["Retry-After"]) <= 86_400
            assert daily_remaining(r) == 0
            assert '"daily";q=2;w=86400' in r.headers["RateLimit-Policy"]
            assert '"burst";q=1000' in r.headers["RateLimit-Policy"]
            # A refused call is not counted either: the store still says 2.
            assert await stack.quota_used(tenant) == 2
            await stack.app.state.gate.audit.flush()
            assert stack.tenancy.repo.audit_count(tenant.id) == 2

    asyncio.run(scenario())


def test_burst_limit_refuses_the_fourth_rapid_call(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", quota_daily=100, rate=1.0, burst=3)

    async def scenario() -> list[httpx.Response]:
        async with running(stack.app) as client:
            # Warm the key cache so the four calls below reach the bucket within milliseconds
            # (with a GET that takes no token: /v1/usage takes one).
            await client.get("/v1/models", headers=bearer(key))
            return await asyncio.gather(
                *(client.post(PREDICT, json={"text": TEXT}, headers=bearer(key)) for _ in range(4))
            )

    responses = asyncio.run(scenario())
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 429]
    [limited] = [r for r in responses if r.status_code == 429]
    body = assert_problem(limited, 429, "quota-exceeded")
    assert body["policy"] == "burst"
    assert limited.headers["Retry-After"] == "1"
    assert re.search(r'"burst";r=0;t=\d+', limited.headers["RateLimit"])
    assert '"burst";q=3;w=3' in limited.headers["RateLimit-Policy"]
    assert asyncio.run(stack.quota_used(tenant)) == 3


def test_a_disabled_tenant_costs_nothing(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", quota_daily=5)
    key_id = keyfmt.parse(key)
    assert key_id is not None

    async def scenario() -> None:
        async with running(stack.app) as client:
            stack.tenancy.update(tenant.id, status="disabled")
            await asyncio.sleep(CACHE_S + 0.1)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert_problem(r, 403, "tenant-disabled")
            assert await stack.quota_used(tenant) == 0

    asyncio.run(scenario())


def test_a_call_needing_two_models_takes_both_units_or_none(stack: Stack) -> None:
    # /api/predict answers "name" with general and "dis" with medical: two units of quota.
    body = {"text": "张三患肺炎", "schema": {"name": None, "dis": None}}
    short, short_key = stack.tenant("short", quota_daily=1)
    enough, enough_key = stack.tenant("enough", quota_daily=2)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post("/api/predict", json=body, headers=bearer(short_key))
            assert_problem(r, 429, "quota-exceeded")
            # the first model's unit was given back and nothing ran or was audited
            assert await stack.quota_used(short) == 0
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(short_key))
            assert r.status_code == 200, r.text
            r = await client.post("/api/predict", json=body, headers=bearer(enough_key))
            assert r.status_code == 200, r.text
            assert r.json()["result"] == {"name": ["张三"], "dis": ["肺炎"]}
            assert await stack.quota_used(enough) == 2
            await stack.app.state.gate.audit.flush()
            assert stack.tenancy.repo.audit_count(short.id) == 1
            assert stack.tenancy.repo.audit_count(enough.id) == 2

    asyncio.run(scenario())


def test_usage_and_token_routes_take_a_burst_token_but_no_daily_unit(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", quota_daily=100, rate=0.01, burst=3)
    admin, admin_key = stack.tenant("ops", rate=0.01, burst=2, admin=True)

    async def scenario() -> None:
        async with running(stack.app) as client:
            for left in (2, 1):
                r = await client.get("/v1/usage", headers=bearer(key))
                assert r.status_code == 200, r.text
                assert daily_remaining(r) == 100
                assert f'"burst";r={left};' in r.headers["RateLimit"]
            r = await client.post("/v1/auth/token", headers=bearer(key))  # the same bucket
            assert r.status_code == 200, r.text
            for path in ("/v1/usage", "/v1/auth/token"):
                if path == "/v1/usage":
                    r = await client.get(path, headers=bearer(key))
                else:
                    r = await client.post(path, headers=bearer(key))
                body = assert_problem(r, 429, "quota-exceeded")
                assert body["policy"] == "burst"
                assert int(r.headers["Retry-After"]) >= 1
                assert re.search(r'"burst";r=0;t=\d+', r.headers["RateLimit"])
                assert daily_remaining(r) == 100
            # a prediction finds the bucket empty too; the daily count never moved
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert assert_problem(r, 429, "quota-exceeded")["policy"] == "burst"
            assert await stack.quota_used(tenant) == 0

            for _ in range(2):
                r = await client.get("/admin/usage", headers=bearer(admin_key))
                assert r.status_code == 200, r.text
            r = await client.get("/admin/usage", headers=bearer(admin_key))
            assert_problem(r, 429, "quota-exceeded")
            assert int(r.headers["Retry-After"]) >= 1
            assert await stack.quota_used(admin) == 0

    asyncio.run(scenario())


def test_a_spent_daily_quota_still_lets_the_tenant_read_its_usage(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", quota_daily=1, rate=0.01, burst=5)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert assert_problem(r, 429)["policy"] == "daily"  # refused: took no token
            r = await client.get("/v1/usage", headers=bearer(key))
            assert r.status_code == 200, r.text
            assert daily_remaining(r) == 0
            assert '"burst";r=3;' in r.headers["RateLimit"]  # the prediction's and its own
            assert await stack.quota_used(tenant) == 1

    asyncio.run(scenario())
