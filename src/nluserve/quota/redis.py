"""Redis quota store: exact across machines.

The check and the count are one Lua script on one authority, using Redis's own clock (TIME)
so machines with skewed clocks still share one bucket. Calls go out on one pipelined
connection per worker (quota/resp.py).
"""

from __future__ import annotations

import contextlib
import time

from nluserve.quota.base import (
    DAY_S,
    Decision,
    Policy,
    QuotaUnavailable,
    burst_retry_after,
    seconds_to_midnight,
    utc_day,
)
from nluserve.quota.resp import PipelinedRedis, RespError

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local quota, rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')
local tokens = tonumber(b[1])
if tokens == nil then tokens = burst else
  tokens = math.min(burst, tokens + math.max(0, now - tonumber(b[2])) * rate) end
if used >= quota then return {0, 1, used, tostring(tokens), tostring(now)} end
if tokens < 1 then return {0, 2, used, tostring(tokens), tostring(now)} end
if count == 0 then return {1, 0, used, tostring(tokens), tostring(now)} end
tokens = tokens - 1
redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[2], 3600)
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], 2 * 86400)
return {1, 0, used, tostring(tokens), tostring(now)}
"""
_RELEASE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used > 0 then return redis.call('DECR', KEYS[1]) end
return 0
"""


class RedisQuotaStore:
    def __init__(self, url: str, fail_open: bool = False, prefix: str = "nluserve") -> None:
        self.client = PipelinedRedis(url, timeout_s=0.5)
        self.fail_open = fail_open
        self.prefix = prefix

    def _keys(self, tenant_id: str, day: str) -> list[str]:
        return [f"{self.prefix}:q:{tenant_id}:{day}", f"{self.prefix}:b:{tenant_id}"]

    async def _decide(self, tenant_id: str, policy: Policy, count: bool) -> Decision:
        day = utc_day(time.time())
        try:
            allowed, violated, used, tokens_s, now_s = await self.client.eval(
                _ACQUIRE,
                self._keys(tenant_id, day),
                [policy.quota_daily, policy.rate_per_s, policy.burst, 1 if count else 0],
            )
        except (RespError, OSError) as exc:
            if self.fail_open:
                return Decision(True, None, 0, float(policy.burst), day, degraded=True)
            raise QuotaUnavailable(f"quota store unreachable ({type(exc).__name__})") from exc
        tokens, now = float(tokens_s), float(now_s)
        day = utc_day(now)
        if violated == 1:
            return Decision(False, "daily", int(used), tokens, day, seconds_to_midnight(now))
        if violated == 2:
            return Decision(
                False, "burst", int(used), tokens, day, burst_retry_after(tokens, policy.rate_per_s)
            )
        return Decision(bool(allowed), None, int(used), tokens, day)

    async def acquire(self, tenant_id: str, policy: Policy) -> Decision:
        return await self._decide(tenant_id, policy, count=True)

    async def peek(self, tenant_id: str, policy: Policy) -> Decision:
        return await self._decide(tenant_id, policy, count=False)

    async def release(self, tenant_id: str, day: str) -> None:
        # A lost give-back errs towards the tenant's limit, never past it.
        with contextlib.suppress(RespError, OSError):
            await self.client.eval(_RELEASE, self._keys(tenant_id, day)[:1], [])

    async def ping(self) -> None:
        await self.client.execute("PING")

    async def close(self) -> None:
        await self.client.close()


__all__ = ["DAY_S", "RedisQuotaStore"]
