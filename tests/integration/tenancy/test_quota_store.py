"""One contract, two stores: SQLite (one machine) and Redis (many) decide and count exactly."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from nluserve.quota.base import Policy, QuotaStore
from nluserve.quota.redis import RedisQuotaStore
from nluserve.quota.sqlite import SqliteQuotaStore
from tests.integration.tenancy.quota_worker import take
from tests.support.services import RedisServer

WIDE = Policy(quota_daily=50, rate_per_s=1000.0, burst=1000)  # only the daily quota binds

StoreFactory = Callable[[], QuotaStore]


@pytest.fixture(params=["sqlite", "redis"])
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds stores of one kind over one shared authority (a file, a server)."""
    if request.param == "sqlite":
        path = tmp_path / "quota.db"
        return lambda: SqliteQuotaStore(path)
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisQuotaStore(server.url)


@asynccontextmanager
async def opened(factory: StoreFactory) -> AsyncIterator[QuotaStore]:
    store = factory()
    try:
        yield store
    finally:
        await store.close()


def _tenant() -> str:
    return uuid.uuid4().hex


def test_concurrent_acquires_admit_exactly_the_quota(new_store: StoreFactory) -> None:
    tenant = _tenant()

    async def scenario() -> tuple[int, int, int]:
        async with opened(new_store) as store:
            decisions = await asyncio.gather(*(store.acquire(tenant, WIDE) for _ in range(64)))
            refused = [d for d in decisions if not d.allowed]
            assert {d.violated for d in refused} == {"daily"}
            assert all(d.retry_after > 0 for d in refused)
            used = sorted(d.daily_used for d in decisions if d.allowed)
            assert used == list(range(1, 51))  # every admitted call saw its own count
            peek = await store.peek(tenant, WIDE)
            return sum(d.allowed for d in decisions), len(refused), peek.daily_used

    assert asyncio.run(scenario()) == (50, 14, 50)


def test_concurrent_acquires_from_several_threads_admit_exactly_the_quota(
    new_store: StoreFactory,
) -> None:
    # SQLite's acquire() does its I/O inline, so gather() alone never overlaps two of them.
    tenant = _tenant()

    def one_thread() -> int:
        async def run() -> int:
            async with opened(new_store) as store:
                results = await asyncio.gather(*(store.acquire(tenant, WIDE) for _ in range(16)))
                return sum(d.allowed for d in results)

        return asyncio.run(run())

    async def scenario() -> int:
        counts = await asyncio.gather(*(asyncio.to_thread(one_thread) for _ in range(4)))
        return sum(counts)

    assert asyncio.run(scenario()) == 50


def test_processes_sharing_one_sqlite_file_admit_exactly_the_quota(tmp_path: Path) -> None:
    path = tmp_path / "quota.db"
    SqliteQuotaStore(path)  # the schema exists before the race starts
    tenant = _tenant()
    ctx = multiprocessing.get_context("spawn")
    processes = 3
    start = ctx.Barrier(processes)
    out = ctx.Queue()
    workers = [
        ctx.Process(target=take, args=(str(path), tenant, 22, WIDE, start, out))
        for _ in range(processes)
    ]
    for w in workers:
        w.start()
    try:
        allowed = [out.get(timeout=120) for _ in workers]
    finally:
        for w in workers:
            w.join(timeout=30)
            if w.is_alive():
                w.kill()
    assert all(w.exitcode == 0 for w in workers)
    assert sum(allowed) == 50

    async def used() -> int:
        async with opened(lambda: SqliteQuotaStore(path)) as store:
            return (await store.peek(tenant, WIDE)).daily_used

    assert asyncio.run(used()) == 50


def test_release_gives_one_call_back_and_never_goes_below_zero(new_store: StoreFactory) -> None:
    tenant = _tenant()
    tight = Policy(quota_daily=3, rate_per_s=1000.0, burst=1000)

    async def scenario() -> None:
        async with opened(new_store) as store:
            decisions = [await store.acquire(tenant, tight) for _ in range(4)]
            assert [d.allowed for d in decisions] == [True, True, True, False]
            await store.release(tenant, decisions[0].day)
            assert (await store.peek(tenant, tight)).daily_used == 2
            again = await store.acquire(tenant, tight)
            assert again.allowed and again.daily_used == 3
            for _ in range(5):
                await store.release(tenant, decisions[0].day)
            assert (await store.peek(tenant, tight)).daily_used == 0

    asyncio.run(scenario())


def test_peek_counts_nothing(new_store: StoreFactory) -> None:
    tenant = _tenant()
    tight = Policy(quota_daily=2, rate_per_s=0.001, burst=2)

    async def scenario() -> None:
        async with opened(new_store) as store:
            for _ in range(10):
                d = await store.peek(tenant, tight)
                assert d.allowed and d.daily_used == 0 and d.burst_tokens == 2
            first = await store.acquire(tenant, tight)
            assert first.allowed and first.daily_used == 1
            assert (await store.peek(tenant, tight)).daily_used == 1

    asyncio.run(scenario())


def test_the_burst_bucket_refuses_without_counting(new_store: StoreFactory) -> None:
    tenant = _tenant()
    slow = Policy(quota_daily=100, rate_per_s=0.01, burst=3)

    async def scenario() -> None:
        async with opened(new_store) as store:
            decisions = [await store.acquire(tenant, slow) for _ in range(5)]
            assert [d.allowed for d in decisions] == [True, True, True, False, False]
            assert [d.violated for d in decisions[3:]] == ["burst", "burst"]
            assert decisions[3].retry_after >= 1
            assert (await store.peek(tenant, slow)).daily_used == 3

    asyncio.run(scenario())


def test_a_token_only_admission_takes_a_burst_token_and_no_daily_unit(
    new_store: StoreFactory,
) -> None:
    tenant = _tenant()
    slow = Policy(quota_daily=1, rate_per_s=0.01, burst=3)

    async def scenario() -> None:
        async with opened(new_store) as store:
            assert (await store.acquire(tenant, slow)).allowed  # the whole daily quota
            taken = [await store.take_token(tenant, slow) for _ in range(3)]
            # a spent daily quota refuses no token; an empty bucket does
            assert [d.allowed for d in taken] == [True, True, False]
            assert [d.daily_used for d in taken] == [1, 1, 1]
            assert taken[1].burst_tokens < 1 and taken[2].violated == "burst"
            assert taken[2].retry_after >= 1
            peek = await store.peek(tenant, slow)
            assert peek.daily_used == 1 and peek.burst_tokens < 1

    asyncio.run(scenario())


def test_token_only_admissions_from_several_threads_take_exactly_the_burst(
    new_store: StoreFactory,
) -> None:
    tenant = _tenant()
    burst = Policy(quota_daily=1, rate_per_s=0.001, burst=40)

    def one_thread() -> int:
        async def run() -> int:
            async with opened(new_store) as store:
                results = await asyncio.gather(
                    *(store.take_token(tenant, burst) for _ in range(16))
                )
                return sum(d.allowed for d in results)

        return asyncio.run(run())

    async def scenario() -> int:
        counts = await asyncio.gather(*(asyncio.to_thread(one_thread) for _ in range(4)))
        return sum(counts)

    assert asyncio.run(scenario()) == 40


def test_tenants_do_not_share_counters(new_store: StoreFactory) -> None:
    a, b = _tenant(), _tenant()
    tight = Policy(quota_daily=2, rate_per_s=1000.0, burst=1000)

    async def scenario() -> None:
        async with opened(new_store) as store:
            assert [(await store.acquire(a, tight)).allowed for _ in range(3)] == [
                True,
                True,
                False,
            ]
            assert (await store.acquire(b, tight)).allowed
            assert (await store.peek(b, tight)).daily_used == 1

    asyncio.run(scenario())


def test_a_locked_sqlite_store_answers_unavailable_soon_and_still_peeks(tmp_path: Path) -> None:
    import sqlite3
    import time

    from nluserve.quota.base import QuotaUnavailable
    from nluserve.quota.sqlite import BUSY_TIMEOUT_S

    path = tmp_path / "quota.sqlite"
    store = SqliteQuotaStore(path)
    policy = Policy(quota_daily=10, rate_per_s=100.0, burst=10)

    async def scenario() -> None:
        assert (await store.acquire("t1", policy)).allowed
        # Another process holds the write lock (a stuck writer, a checkpoint on a slow disk).
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            started = time.monotonic()
            with pytest.raises(QuotaUnavailable, match="busy"):
                await store.acquire("t1", policy)
            assert time.monotonic() - started < BUSY_TIMEOUT_S + 1.0  # not the old 30 s
            peeked = await store.peek("t1", policy)  # a read takes no write lock
            assert peeked.allowed and peeked.daily_used == 1
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await store.acquire("t1", policy)).daily_used == 2
        await store.close()

    asyncio.run(scenario())
