"""Admission: authenticate, take quota before a call runs, give it back if it does not, audit it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from nluserve.audit.recorder import AuditRecorder
from nluserve.errors import NluserveError
from nluserve.quota.base import Decision, Policy, QuotaStore, seconds_to_midnight
from nluserve.tenancy.auth import Authenticator, Principal


class QuotaExceeded(NluserveError):
    """429: the named policy is exhausted."""

    def __init__(self, decision: Decision, units: int = 1) -> None:
        self.decision = decision
        needs = f" (this call needs {units} units, one per model)" if units > 1 else ""
        super().__init__(
            f"{decision.violated} limit reached{needs}; retry after {decision.retry_after} s"
        )


@dataclass(frozen=True)
class Ticket:
    principal: Principal
    decision: Decision
    started: float


def policy_of(principal: Principal) -> Policy:
    t = principal.tenant
    return Policy(t.quota_daily, t.rate_per_s, t.burst)


def ratelimit_headers(policy: Policy, decision: Decision | None) -> dict[str, str]:
    """IETF httpapi-ratelimit-headers draft-11 structured fields."""
    headers = {
        "RateLimit-Policy": f'"daily";q={policy.quota_daily};w=86400, '
        f'"burst";q={policy.burst};w={max(1, round(policy.burst / policy.rate_per_s))}'
    }
    if decision is not None and not decision.degraded:
        reset = seconds_to_midnight(time.time())
        burst_left = max(0, int(decision.burst_tokens))
        burst_reset = (
            0
            if burst_left >= policy.burst
            else max(1, round((policy.burst - decision.burst_tokens) / policy.rate_per_s))
        )
        headers["RateLimit"] = (
            f'"daily";r={decision.daily_remaining(policy)};t={reset}, '
            f'"burst";r={burst_left};t={burst_reset}'
        )
    return headers


class Gate:
    def __init__(
        self, auth: Authenticator, quota: QuotaStore, audit: AuditRecorder, audit_text: bool
    ) -> None:
        self.auth = auth
        self.quota = quota
        self.audit = audit
        self.audit_text = audit_text

    async def admit(self, principal: Principal) -> Ticket:
        decision = await self.quota.acquire(principal.tenant.id, policy_of(principal))
        if not decision.allowed:
            raise QuotaExceeded(decision)
        return Ticket(principal, decision, time.monotonic())

    async def meter(self, principal: Principal) -> Decision:
        """One burst token and no daily unit, for a route that runs no model but must not be
        called without limit (a usage report, a token signature)."""
        decision = await self.quota.take_token(principal.tenant.id, policy_of(principal))
        if not decision.allowed:
            raise QuotaExceeded(decision)
        return decision

    async def give_back(self, ticket: Ticket) -> None:
        if ticket.decision.degraded:  # admitted uncounted (fail-open): there is nothing to return
            return
        await self.quota.release(ticket.principal.tenant.id, ticket.decision.day)

    def record(
        self,
        ticket: Ticket,
        request_id: str,
        route: str,
        model: str,
        task: str,
        texts: list[str],
        status: int,
    ) -> None:
        self.audit.record_call(
            request_id=request_id,
            ts=datetime.now(UTC),
            tenant_id=ticket.principal.tenant.id,
            key_id=ticket.principal.key_id,
            route=route,
            model=model,
            task=task,
            n_texts=len(texts),
            chars=sum(len(t) for t in texts),
            status=status,
            latency_ms=round((time.monotonic() - ticket.started) * 1000, 3),
            text="\n".join(texts) if self.audit_text else None,
        )
