"""Tenancy values passed between services (never ORM rows)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    status: str  # "active" | "disabled"
    admin: bool
    quota_daily: int
    rate_per_s: float
    burst: int
    scopes: tuple[str, ...]  # empty or ("*",) = every model
    created_at: datetime

    @property
    def active(self) -> bool:
        return self.status == "active"

    def scope_set(self) -> frozenset[str] | None:
        """None means every model."""
        return None if not self.scopes or "*" in self.scopes else frozenset(self.scopes)


@dataclass(frozen=True)
class KeyRecord:
    id: str
    tenant_id: str
    name: str
    digest: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class AuditRecord:
    request_id: str
    ts: datetime
    tenant_id: str
    key_id: str | None
    route: str
    model: str
    task: str
    n_texts: int
    chars: int
    status: int
    latency_ms: float
    text: str | None = None
    # The key that makes spool replays idempotent. Server-made, never the client's X-Request-ID:
    # a client that reuses one request id must not make its calls vanish from the audit.
    # 128 bits from the process PRNG (reseeded after fork), as request ids: uuid4's os.urandom
    # is a syscall on every call's hot path, and uniqueness is all this key needs.
    record_id: str = field(default_factory=lambda: f"{random.getrandbits(128):032x}")


@dataclass(frozen=True)
class UsageRow:
    day: str
    tenant_id: str
    model: str
    calls: int
    texts: int
    chars: int
    errors: int
    error_statuses: dict[str, int] = field(default_factory=dict)  # "429" -> count
