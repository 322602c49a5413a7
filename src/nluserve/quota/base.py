"""The QuotaStore protocol and its values, shared by the SQLite and Redis stores."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nluserve.errors import NluserveError

DAY_S = 86_400
# What a decision takes when it admits: nothing (a peek), a call (a daily unit and a burst
# token), or a burst token only. The numbers are the Redis script's.
PEEK, CALL, TOKEN = 0, 1, 2


@dataclass(frozen=True)
class Policy:
    """A tenant's limits: calls per UTC day and a token bucket (rate/s, burst)."""

    quota_daily: int
    rate_per_s: float
    burst: int


@dataclass(frozen=True)
class Decision:
    """The outcome of one atomic check-and-count."""

    allowed: bool
    violated: str | None  # "daily" | "burst" | None
    daily_used: int
    burst_tokens: float
    day: str
    retry_after: int = 0
    degraded: bool = False  # the store was unreachable and the operator chose fail-open

    def daily_remaining(self, policy: Policy) -> int:
        return max(0, policy.quota_daily - self.daily_used)


class QuotaUnavailable(NluserveError):
    """The quota store cannot be reached or cannot decide, and the policy is to fail closed."""

    def __init__(self, message: str, backend: str) -> None:
        super().__init__(message)
        self.backend = backend  # "sqlite" | "redis": the metrics label


class QuotaStore(Protocol):
    """Implementations decide and count in one atomic step on one authority."""

    async def acquire(self, tenant_id: str, policy: Policy) -> Decision:
        """Admit one call (count it) or refuse it (count nothing)."""
        ...

    async def release(self, tenant_id: str, day: str) -> None:
        """Give back one admitted call that was then not run (overload, timeout)."""
        ...

    async def take_token(self, tenant_id: str, policy: Policy) -> Decision:
        """Take one burst token and no daily unit (a route that runs no model but still costs
        the service something); refused only by an empty bucket, never by the daily quota."""
        ...

    async def peek(self, tenant_id: str, policy: Policy) -> Decision:
        """Current standing without counting anything."""
        ...

    async def ping(self) -> None:
        """Raise if the store is unreachable."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def utc_day(ts: float) -> str:
    return _day_name(int(ts // DAY_S))


@functools.lru_cache(maxsize=4)
def _day_name(day_number: int) -> str:
    # Formatting a date costs more than the rest of a SQLite quota decision's Python.
    return datetime.fromtimestamp(day_number * DAY_S, UTC).strftime("%Y-%m-%d")


def seconds_to_midnight(ts: float) -> int:
    return max(1, DAY_S - int(ts) % DAY_S)


def burst_retry_after(tokens: float, rate: float) -> int:
    return max(1, int((1.0 - tokens) / rate + 0.999)) if rate > 0 else DAY_S
