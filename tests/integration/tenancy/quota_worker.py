"""A separate OS process taking quota from a shared SQLite file (spawned by test_quota_store).

Kept apart from the test module so a spawned child imports only the quota store, not pytest.
"""

from __future__ import annotations

import asyncio
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

from nluserve.quota.base import Policy
from nluserve.quota.sqlite import SqliteQuotaStore


def take(
    path: str, tenant: str, calls: int, policy: Policy, start: Barrier, out: Queue[int]
) -> None:
    """Wait for every sibling, then call acquire() ``calls`` times; report how many were allowed."""

    async def run() -> int:
        store = SqliteQuotaStore(Path(path))
        start.wait(timeout=60)
        allowed = 0
        for _ in range(calls):
            allowed += (await store.acquire(tenant, policy)).allowed
        await store.close()
        return allowed

    out.put(asyncio.run(run()))
