"""A daily quota is exact across both instances: nginx spreads the calls, Redis counts them."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections import Counter

import httpx
import pytest

from tests.integration.deploy.e2e.load import TEXT
from tests.integration.deploy.e2e.stack import Stack, bearer

pytestmark = pytest.mark.slow

QUOTA = 40
CALLS = 80
# Under the rendered `limit_conn ... 64` per client address: every call here comes from 127.0.0.1.
CONCURRENCY = 20


async def _fire(stack: Stack, key: str, ids: list[str]) -> list[httpx.Response]:
    gate = asyncio.Semaphore(CONCURRENCY)
    async with stack.async_client(CONCURRENCY) as client:

        async def one(request_id: str) -> httpx.Response:
            async with gate:
                return await client.post(
                    "/v1/ner",
                    json={"text": TEXT},
                    headers={**bearer(key), "X-Request-ID": request_id},
                )

        return await asyncio.gather(*(one(i) for i in ids))


def _daily_remaining(r: httpx.Response) -> int:
    m = re.search(r'"daily";r=(\d+)', r.headers["ratelimit"])
    assert m, r.headers
    return int(m[1])


def test_quota_is_shared_exactly_across_both_instances(stack: Stack) -> None:
    tenant_id, key = stack.tenant("quota-acme", quota_daily=QUOTA)
    ids = [f"e2e-quota-{uuid.uuid4().hex[:12]}-{i}" for i in range(CALLS)]
    offset = stack.nginx.access_offset()
    responses = asyncio.run(_fire(stack, key, ids))

    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({200: QUOTA, 429: CALLS - QUOTA}), statuses
    refused = [r for r in responses if r.status_code == 429]
    # nluserve's own 429 (a problem document naming the daily policy), not nginx's limit_req.
    assert {r.json()["policy"] for r in refused} == {"daily"}
    admitted = [r for r in responses if r.status_code == 200]
    assert sorted(_daily_remaining(r) for r in admitted) == list(range(QUOTA))

    # Both instances admitted calls: the count is shared, not per instance.
    upstream = {e["request_id"]: e["upstream"] for e in stack.nginx.access(offset)}
    admitted_by = Counter(upstream[r.headers["x-request-id"]] for r in admitted)
    assert set(admitted_by) == {i.upstream for i in stack.instances}, admitted_by
    ok_ids = {r.headers["x-request-id"] for r in admitted}
    assert stack.wait_audited(tenant_id, ok_ids) == set()
    assert stack.audited(tenant_id) == ok_ids  # refused calls cost nothing and are not audited
