"""Redis quota store: exact across machines.

The check and the count are one Lua script on one authority, using Redis's own clock (TIME)
for the bucket and for the UTC day, so machines with skewed clocks still share one bucket and
one daily counter, and a give-back returns the unit to the day's key it was taken from. Calls
go out on one pipelined connection per worker (quota/resp.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time

from nluserve.quota.base import (
    CALL,
    DAY_S,
    PEEK,
    TOKEN,
    Decision,
    Policy,
    QuotaUnavailable,
    burst_retry_after,
    seconds_to_midnight,
    utc_day,
)
from nluserve.quota.resp import PipelinedRedis, RespError

# Days since 1970-01-01 to 'YYYY-MM-DD' (H. Hinnant's civil_from_days), the name utc_day() gives.
_UTC_DATE = """
local function utc_date(n)
  local z = n + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end
"""
# KEYS[1]: the tenant's bucket. ARGV[5]: the stem of its daily keys ("<prefix>:q:<tenant>:"); the
# day is Redis's, so every worker counts into, and gives back to, one key whatever its own clock
# says. Building a key name inside the script is fine on the single Redis this store uses.
# An absent bucket reads as full, so its key lives as long as refilling an empty one takes.
# ARGV[4]: what an admission takes: 0 nothing (a peek), 1 a call (a daily unit and a burst token),
# 2 a burst token only, which a spent daily quota does not refuse.
# ARGV[6]: this call's receipt key, naming the daily key it counted into, kept UNDO_WINDOW
# seconds: a caller whose answer timed out cannot know whether the unit was counted, and gives
# it back through the receipt (_UNDO), which exists only if it was.
UNDO_WINDOW_S = 30
_ACQUIRE = (
    _UTC_DATE
    + f"local UNDO_WINDOW = {UNDO_WINDOW_S}\n"
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local day = utc_date(math.floor(tonumber(t[1]) / 86400))
local daily = ARGV[5] .. day
local quota, rate, burst, count = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local used = tonumber(redis.call('GET', daily) or '0')
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
if tokens == nil then tokens = burst else
  tokens = math.min(burst, tokens + math.max(0, now - tonumber(b[2])) * rate) end
if used >= quota and count ~= 2 then return {0, 1, used, tostring(tokens), tostring(now), day} end
if tokens < 1 then return {0, 2, used, tostring(tokens), tostring(now), day} end
if count == 0 then return {1, 0, used, tostring(tokens), tostring(now), day} end
tokens = tokens - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
local refill = math.min(math.ceil(burst / rate) + 1, 1e13)
redis.call('EXPIRE', KEYS[1], string.format('%d', refill))
if count == 2 then return {1, 0, used, tostring(tokens), tostring(now), day} end
used = redis.call('INCR', daily)
redis.call('EXPIRE', daily, 2 * 86400)
redis.call('SET', ARGV[6], daily, 'EX', UNDO_WINDOW)
return {1, 0, used, tostring(tokens), tostring(now), day}
"""
)
_UNDO = """
local daily = redis.call('GET', KEYS[1])
if not daily then return 0 end
redis.call('DEL', KEYS[1])
local used = tonumber(redis.call('GET', daily) or '0')
if used > 0 then redis.call('DECR', daily) end
return 1
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
        self._undoing: set[asyncio.Task[None]] = set()

    def _daily_stem(self, tenant_id: str) -> str:
        return f"{self.prefix}:q:{tenant_id}:"

    def _daily_key(self, tenant_id: str, day: str) -> str:
        return self._daily_stem(tenant_id) + day

    def _bucket_key(self, tenant_id: str) -> str:
        return f"{self.prefix}:b:{tenant_id}"

    async def _decide(self, tenant_id: str, policy: Policy, takes: int) -> Decision:
        receipt = f"{self.prefix}:r:{secrets.token_hex(8)}"
        try:
            allowed, violated, used, tokens_s, now_s, day_s = await self.client.eval(
                _ACQUIRE,
                [self._bucket_key(tenant_id)],
                [
                    policy.quota_daily,
                    policy.rate_per_s,
                    policy.burst,
                    takes,
                    self._daily_stem(tenant_id),
                    receipt,
                ],
            )
        except (RespError, OSError) as exc:
            if takes == CALL and isinstance(exc, OSError):
                # Sent, maybe run: Redis may have counted a call this worker now refuses (503).
                self._undo_later(receipt)
            if self.fail_open:  # nothing counted: Gate.give_back never gives this one back
                day = utc_day(time.time())
                return Decision(True, None, 0, float(policy.burst), day, degraded=True)
            raise QuotaUnavailable(
                f"quota store unreachable ({type(exc).__name__})", "redis"
            ) from exc
        tokens, now = float(tokens_s), float(now_s)
        day = day_s.decode()  # the day whose key the script read (and counted into)
        if violated == 1:
            return Decision(False, "daily", int(used), tokens, day, seconds_to_midnight(now))
        if violated == 2:
            return Decision(
                False, "burst", int(used), tokens, day, burst_retry_after(tokens, policy.rate_per_s)
            )
        return Decision(bool(allowed), None, int(used), tokens, day)

    async def acquire(self, tenant_id: str, policy: Policy) -> Decision:
        return await self._decide(tenant_id, policy, CALL)

    async def take_token(self, tenant_id: str, policy: Policy) -> Decision:
        return await self._decide(tenant_id, policy, TOKEN)

    async def peek(self, tenant_id: str, policy: Policy) -> Decision:
        return await self._decide(tenant_id, policy, PEEK)

    def _undo_later(self, receipt: str) -> None:
        task = asyncio.get_running_loop().create_task(self._undo(receipt))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    async def _undo(self, receipt: str) -> None:
        """Give back the unit behind ``receipt``, if it was counted, while its receipt lives."""
        for delay in (0.5, 1.0, 2.0, 4.0, 8.0, 8.0):
            await asyncio.sleep(delay)
            with contextlib.suppress(RespError, OSError):
                await self.client.eval(_UNDO, [receipt], [])
                return

    async def release(self, tenant_id: str, day: str) -> None:
        # A lost give-back errs towards the tenant's limit, never past it.
        with contextlib.suppress(RespError, OSError):
            await self.client.eval(_RELEASE, [self._daily_key(tenant_id, day)], [])

    async def ping(self) -> None:
        await self.client.execute("PING")

    async def close(self) -> None:
        for task in list(self._undoing):
            task.cancel()
        await self.client.close()


__all__ = ["DAY_S", "RedisQuotaStore"]
