"""The Redis quota store on a real Redis: Redis's clock names the day, give-backs hit the key
that was counted, fail-open admissions are never given back, and a slow bucket outlives its
refill time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from nluserve.quota.base import DAY_S, Policy, utc_day
from nluserve.quota.redis import _UTC_DATE, RedisQuotaStore
from nluserve.quota.resp import PipelinedRedis
from nluserve.tenancy.auth import Principal
from nluserve.tenancy.gate import Gate
from nluserve.tenancy.limits import MAX_BURST, MIN_RATE
from nluserve.tenancy.values import Tenant
from tests.support.services import RedisServer

PREFIX = "nluserve"  # RedisQuotaStore's default key prefix
WIDE = Policy(quota_daily=1000, rate_per_s=1000.0, burst=1000)


def _tenant_id() -> str:
    return uuid.uuid4().hex


async def _redis_now(client: PipelinedRedis) -> float:
    seconds, micros = await client.execute("TIME")
    return int(seconds) + int(micros) / 1e6


async def _redis_day(client: PipelinedRedis) -> str:
    """Redis's UTC day; skips the test in the last seconds before midnight, when it may change."""
    now = await _redis_now(client)
    if DAY_S - now % DAY_S < 10:
        pytest.skip("too close to midnight UTC (by Redis's clock) to name one day")
    return utc_day(now)


async def _daily_counters(client: PipelinedRedis, tenant: str) -> dict[str, int]:
    keys = await client.execute("KEYS", f"{PREFIX}:q:{tenant}:*")
    out = {}
    for key in keys:
        name = key.decode()
        out[name.rsplit(":", 1)[1]] = int(await client.execute("GET", name))
    return out


@pytest.mark.parametrize("skew_days", [1.5, -1.5])
def test_a_skewed_worker_clock_counts_and_gives_back_redis_s_day(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, skew_days: float
) -> None:
    tenant = _tenant_id()
    real_time = time.time

    async def scenario() -> None:
        client = PipelinedRedis(redis_server.url)
        store = RedisQuotaStore(redis_server.url)
        try:
            today = await _redis_day(client)
            monkeypatch.setattr(time, "time", lambda: real_time() + skew_days * DAY_S)
            assert utc_day(time.time()) != today  # this worker believes it is another day
            decision = await store.acquire(tenant, WIDE)
            assert decision.allowed and decision.daily_used == 1
            assert decision.day == today
            assert await _daily_counters(client, tenant) == {today: 1}
            await store.release(tenant, decision.day)
            assert await _daily_counters(client, tenant) == {today: 0}
            peek = await store.peek(tenant, WIDE)
            assert peek.daily_used == 0 and peek.day == today
        finally:
            monkeypatch.setattr(time, "time", real_time)
            await store.close()
            await client.close()

    asyncio.run(scenario())


def test_workers_with_skewed_clocks_share_one_daily_counter(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = _tenant_id()
    tight = Policy(quota_daily=3, rate_per_s=1000.0, burst=1000)
    real_time = time.time

    async def scenario() -> list[bool]:
        client = PipelinedRedis(redis_server.url)
        ahead, behind = RedisQuotaStore(redis_server.url), RedisQuotaStore(redis_server.url)
        allowed = []
        try:
            today = await _redis_day(client)
            for _ in range(2):
                for store, skew in ((ahead, DAY_S - 1.0), (behind, -(DAY_S - 1.0))):
                    monkeypatch.setattr(time, "time", lambda s=skew: real_time() + s)
                    allowed.append((await store.acquire(tenant, tight)).allowed)
            monkeypatch.setattr(time, "time", real_time)
            assert await _daily_counters(client, tenant) == {today: 3}
        finally:
            monkeypatch.setattr(time, "time", real_time)
            for s in (ahead, behind):
                await s.close()
            await client.close()
        return allowed

    assert asyncio.run(scenario()) == [True, True, True, False]


def test_the_day_is_named_by_redis_in_the_same_format_as_the_sqlite_store(
    redis_server: RedisServer,
) -> None:
    # The key names must not change with the Lua port: a rolling upgrade shares today's counter.
    tenant = _tenant_id()

    async def scenario() -> None:
        client = PipelinedRedis(redis_server.url)
        store = RedisQuotaStore(redis_server.url)
        try:
            today = await _redis_day(client)
            assert today == datetime.fromtimestamp(await _redis_now(client), UTC).strftime(
                "%Y-%m-%d"
            )
            await client.execute("SET", f"{PREFIX}:q:{tenant}:{today}", "7")  # an older worker's
            decision = await store.acquire(tenant, WIDE)
            assert (decision.day, decision.daily_used) == (today, 8)
        finally:
            await store.close()
            await client.close()

    asyncio.run(scenario())


def _principal(tenant_id: str) -> Principal:
    tenant = Tenant(
        id=tenant_id,
        name="acme",
        status="active",
        admin=False,
        quota_daily=WIDE.quota_daily,
        rate_per_s=WIDE.rate_per_s,
        burst=WIDE.burst,
        scopes=(),
        created_at=datetime.now(UTC),
    )
    return Principal(tenant, None)


def test_a_call_admitted_uncounted_while_redis_was_away_is_never_given_back(
    persistent_redis_server: RedisServer,
) -> None:
    server = persistent_redis_server  # keeps its counters over the restart
    principal = _principal(_tenant_id())
    store = RedisQuotaStore(server.url, fail_open=True)
    gate = Gate(cast(Any, None), store, cast(Any, None), audit_text=False)

    async def scenario() -> None:
        try:
            counted = await gate.admit(principal)
            assert not counted.decision.degraded and counted.decision.daily_used == 1
            await asyncio.to_thread(server.stop)
            uncounted = await gate.admit(principal)  # fail-open: admitted, nothing counted
            assert uncounted.decision.degraded
            await asyncio.to_thread(server.start)
            await gate.give_back(uncounted)  # e.g. the queue was full: 503
            assert (await store.peek(principal.tenant.id, WIDE)).daily_used == 1
            await gate.give_back(counted)  # a counted call is still given back
            assert (await store.peek(principal.tenant.id, WIDE)).daily_used == 0
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_slow_bucket_lives_as_long_as_it_takes_to_refill(redis_server: RedisServer) -> None:
    # rate 0.001/s, burst 20: an empty bucket takes 20,000 s to refill. Were the key to expire
    # sooner, the tenant would get the whole burst back early (it reads as a full bucket).
    tenant = _tenant_id()
    slow = Policy(quota_daily=1000, rate_per_s=0.001, burst=20)
    fast = Policy(quota_daily=1000, rate_per_s=10.0, burst=20)

    async def scenario() -> tuple[int, int]:
        client = PipelinedRedis(redis_server.url)
        store = RedisQuotaStore(redis_server.url)
        try:
            decisions = [await store.acquire(tenant, slow) for _ in range(21)]
            assert [d.allowed for d in decisions] == [True] * 20 + [False]
            slow_ttl = int(await client.execute("TTL", f"{PREFIX}:b:{tenant}"))
            other = _tenant_id()
            assert (await store.acquire(other, fast)).allowed
            fast_ttl = int(await client.execute("TTL", f"{PREFIX}:b:{other}"))
            return slow_ttl, fast_ttl
        finally:
            await store.close()
            await client.close()

    slow_ttl, fast_ttl = asyncio.run(scenario())
    assert 20_000 <= slow_ttl <= 20_002
    assert 1 <= fast_ttl <= 3  # 20 / 10 s (+1): a full bucket needs no key at all


def test_the_script_names_every_day_as_utc_day_does(redis_server: RedisServer) -> None:
    # 1970-01-01 to past 2400, leap centuries included, in one script run.
    script = (
        _UTC_DATE
        + "local out = {} for n = tonumber(ARGV[1]), tonumber(ARGV[2]) do "
        + "out[#out + 1] = utc_date(n) end return out"
    )
    last = 160_000

    async def scenario() -> list[str]:
        client = PipelinedRedis(redis_server.url, timeout_s=10)
        try:
            return [d.decode() for d in await client.eval(script, [], [0, last])]
        finally:
            await client.close()

    assert asyncio.run(scenario()) == [utc_day(n * DAY_S) for n in range(last + 1)]


def test_the_slowest_bucket_the_limits_allow_gets_a_ttl_redis_accepts(
    redis_server: RedisServer,
) -> None:
    tenant = _tenant_id()
    slowest = Policy(quota_daily=10, rate_per_s=MIN_RATE, burst=MAX_BURST)

    async def scenario() -> int:
        client = PipelinedRedis(redis_server.url)
        store = RedisQuotaStore(redis_server.url)
        try:
            assert (await store.acquire(tenant, slowest)).allowed
            return int(await client.execute("TTL", f"{PREFIX}:b:{tenant}"))
        finally:
            await store.close()
            await client.close()

    assert 10**13 - 5 <= asyncio.run(scenario()) <= 10**13


_STALL = """
local t = redis.call('TIME')
local t0 = tonumber(t[1]) + tonumber(t[2]) / 1000000
while true do
  local n = redis.call('TIME')
  if tonumber(n[1]) + tonumber(n[2]) / 1000000 - t0 > tonumber(ARGV[1]) then break end
end
return 1
"""


def test_a_unit_counted_for_a_call_that_timed_out_is_given_back(
    redis_server: RedisServer,
) -> None:
    from nluserve.quota.base import QuotaUnavailable

    tenant = _tenant_id()

    async def scenario() -> None:
        store = RedisQuotaStore(redis_server.url)
        other = PipelinedRedis(redis_server.url, timeout_s=10)
        day = await _redis_day(other)
        assert (await store.acquire(tenant, WIDE)).allowed
        # Redis stalls (a slow script, a fork on a big instance) longer than the store's 0.5 s
        # timeout: the call is refused with 503, but Redis runs it once the stall is over.
        stall = asyncio.create_task(other.eval(_STALL, [], [1.5]))
        await asyncio.sleep(0.1)
        with pytest.raises(QuotaUnavailable):
            await store.acquire(tenant, WIDE)
        await stall
        deadline = time.monotonic() + 15
        while (await _daily_counters(other, tenant)).get(day) != 1:
            assert time.monotonic() < deadline, await _daily_counters(other, tenant)
            await asyncio.sleep(0.2)
        # The first call's receipt waits out its window; the refused call's was spent.
        assert len(await other.execute("KEYS", f"{PREFIX}:r:*")) == 1
        await store.close()
        await other.close()

    asyncio.run(scenario())
