"""Repository: every SQL statement nluserve runs, returning plain values."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, false, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from nluserve.db.engine import make_engine
from nluserve.db.tables import ApiKeyRow, AuditRow, RevokedTokenRow, SigningKeyRow, TenantRow
from nluserve.errors import ConflictError
from nluserve.tenancy.values import AuditRecord, KeyRecord, Tenant, UsageRow

# pg_advisory_xact_lock key for changes to who may administer (any 64-bit constant).
_ADMIN_LOCK = 0x6E6C7561646D696E  # "nluadmin"


class LockoutRefused(Exception):
    """The change would leave no usable key on an active admin tenant (raised in the lock)."""


def now() -> datetime:
    return datetime.now(UTC)


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; everything nluserve stores is UTC."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _tenant(row: TenantRow) -> Tenant:
    return Tenant(
        row.id,
        row.name,
        row.status,
        row.admin,
        row.quota_daily,
        row.rate_per_s,
        row.burst,
        tuple(row.scopes or ()),
        _aware(row.created_at) or now(),
    )


def _key(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        row.id,
        row.tenant_id,
        row.name,
        row.digest,
        _aware(row.created_at) or now(),
        _aware(row.expires_at),
        _aware(row.revoked_at),
        _aware(row.last_used_at),
    )


class Repository:
    """Thread-safe (a session per call); synchronous, so async callers use a thread."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = make_engine(url)
        self._pid = os.getpid()
        ins = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        self._audit_insert = ins(AuditRow).on_conflict_do_nothing(index_elements=["record_id"])
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def after_fork(self) -> None:
        """Forget pooled connections inherited from a parent process (never close them: they
        are the parent's); in the creating process this does nothing."""
        if os.getpid() != self._pid:
            self.engine.dispose(close=False)
            self._pid = os.getpid()

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # tenants
    def create_tenant(
        self,
        name: str,
        quota_daily: int,
        rate_per_s: float,
        burst: int,
        scopes: Sequence[str],
        admin: bool = False,
    ) -> Tenant:
        ts = now()
        row = TenantRow(
            id=uuid.uuid4().hex,
            name=name,
            status="active",
            admin=admin,
            quota_daily=quota_daily,
            rate_per_s=rate_per_s,
            burst=burst,
            scopes=list(scopes),
            created_at=ts,
            updated_at=ts,
        )
        try:
            with self._sessions.begin() as s:
                s.add(row)
        except IntegrityError as exc:
            raise ConflictError(f"tenant {name!r} exists") from exc
        return _tenant(row)

    def tenant(self, id_or_name: str) -> Tenant | None:
        with self._sessions() as s:
            row = s.get(TenantRow, id_or_name) or s.scalar(
                select(TenantRow).where(TenantRow.name == id_or_name)
            )
            return _tenant(row) if row else None

    def tenant_by_id(self, tenant_id: str) -> Tenant | None:
        """By id alone: a token's subject is an id, never a name a tenant could be renamed to."""
        with self._sessions() as s:
            row = s.get(TenantRow, tenant_id)
            return _tenant(row) if row else None

    def tenants(self) -> list[Tenant]:
        with self._sessions() as s:
            return [_tenant(r) for r in s.scalars(select(TenantRow).order_by(TenantRow.created_at))]

    def count_tenants(self) -> int:
        with self._sessions() as s:
            return int(s.scalar(select(func.count()).select_from(TenantRow)) or 0)

    def update_tenant(self, tenant_id: str, **fields: object) -> Tenant | None:
        """Raises LockoutRefused instead of disabling the last admin tenant with a usable key,
        checked and written under one lock, so two admins cannot disable each other."""
        allowed = {"status", "quota_daily", "rate_per_s", "burst", "scopes", "name"}
        values = {k: v for k, v in fields.items() if k in allowed and v is not None}
        try:
            with self._admin_lock() as s:
                row = s.get(TenantRow, tenant_id)
                if row is None:
                    return None
                if (
                    values.get("status") == "disabled"
                    and row.admin
                    and row.status == "active"
                    and not self._usable_admin_keys(s, lambda k: k.tenant_id != tenant_id)
                ):
                    raise LockoutRefused(row.name)
                for k, v in values.items():
                    setattr(row, k, list(v) if k == "scopes" else v)  # type: ignore[call-overload]
                row.updated_at = now()
                return _tenant(row)
        except IntegrityError as exc:  # a rename racing a create or another rename
            raise ConflictError(f"tenant {values.get('name')!r} exists") from exc

    @contextlib.contextmanager
    def _admin_lock(self) -> Iterator[Session]:
        """A transaction that runs alone among those that change who may administer, on every
        worker and machine: their check (another admin key exists) and their write must not
        interleave, or two admins revoking each other at once both succeed."""
        with self._sessions.begin() as s:
            if self.engine.dialect.name == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADMIN_LOCK})
            else:
                # SQLite has one write lock per database; a write takes it until the commit,
                # and this one changes nothing. Its reads after this see the latest data.
                s.execute(update(TenantRow).where(false()).values(updated_at=TenantRow.updated_at))
            yield s

    @staticmethod
    def _usable_admin_keys(s: Session, keep: Callable[[ApiKeyRow], bool]) -> bool:
        """Whether a key that ``keep`` accepts could still reach the admin API."""
        ts = now()
        q = (
            select(ApiKeyRow)
            .join(TenantRow, TenantRow.id == ApiKeyRow.tenant_id)
            .where(TenantRow.admin.is_(True), TenantRow.status == "active")
            .where(ApiKeyRow.revoked_at.is_(None))
        )
        return any(
            keep(k) and (k.expires_at is None or (_aware(k.expires_at) or ts) > ts)
            for k in s.scalars(q)
        )

    # keys
    def add_key(
        self, tenant_id: str, key_id: str, digest: str, name: str, expires_at: datetime | None
    ) -> KeyRecord:
        row = ApiKeyRow(
            id=key_id,
            tenant_id=tenant_id,
            name=name,
            digest=digest,
            created_at=now(),
            expires_at=expires_at,
        )
        with self._sessions.begin() as s:
            s.add(row)
        return _key(row)

    def key(self, key_id: str) -> KeyRecord | None:
        with self._sessions() as s:
            row = s.get(ApiKeyRow, key_id)
            return _key(row) if row else None

    def keys(self, tenant_id: str) -> list[KeyRecord]:
        with self._sessions() as s:
            q = (
                select(ApiKeyRow)
                .where(ApiKeyRow.tenant_id == tenant_id)
                .order_by(ApiKeyRow.created_at)
            )
            return [_key(r) for r in s.scalars(q)]

    def revoke_key(self, key_id: str) -> KeyRecord | None:
        """Raises LockoutRefused instead of revoking the last usable key of the active admin
        tenants, checked and written under one lock."""
        with self._admin_lock() as s:
            row = s.get(ApiKeyRow, key_id)
            if row is None:
                return None
            owner = s.get(TenantRow, row.tenant_id)
            if (
                row.revoked_at is None
                and owner is not None
                and owner.admin
                and owner.status == "active"
                and not self._usable_admin_keys(s, lambda k: k.id != key_id)
            ):
                raise LockoutRefused(key_id)
            row.revoked_at = row.revoked_at or now()
            return _key(row)

    def touch_keys(self, used: dict[str, datetime]) -> None:
        with self._sessions.begin() as s:
            for key_id, ts in used.items():
                s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=ts))

    # signing keys and revocations
    def add_signing_key(self, kid: str, private_pem: str, public_pem: str) -> datetime:
        created = now()
        with self._sessions.begin() as s:
            s.add(
                SigningKeyRow(
                    kid=kid, private_pem=private_pem, public_pem=public_pem, created_at=created
                )
            )
        return created

    def retire_signing_keys(self, older_than: datetime) -> None:
        with self._sessions.begin() as s:
            s.execute(
                update(SigningKeyRow)
                .where(SigningKeyRow.created_at < older_than, SigningKeyRow.retired_at.is_(None))
                .values(retired_at=now())
            )

    def signing_keys(self, verify_window: timedelta) -> list[tuple[str, str, str, bool]]:
        """(kid, private_pem, public_pem, current) for keys that may still verify tokens."""
        cutoff = now() - verify_window
        with self._sessions() as s:
            rows = s.scalars(select(SigningKeyRow).order_by(SigningKeyRow.created_at.desc())).all()
            return [
                (r.kid, r.private_pem, r.public_pem, r.retired_at is None)
                for r in rows
                if r.retired_at is None or (_aware(r.retired_at) or now()) > cutoff
            ]

    def revoke_jti(self, jti: str, expires_at: datetime) -> None:
        with self._sessions.begin() as s:
            s.merge(RevokedTokenRow(jti=jti, expires_at=expires_at))

    def revoked_jtis(self) -> set[str]:
        with self._sessions() as s:
            q = select(RevokedTokenRow.jti).where(RevokedTokenRow.expires_at > now())
            return set(s.scalars(q))

    # audit and usage
    def insert_audit(self, records: Iterable[AuditRecord]) -> int:
        """Insert, ignoring record ids already stored (spool replays are idempotent)."""
        rows = [r.__dict__ for r in records]
        if not rows:
            return 0
        # One statement, built once and executed with many parameter sets: embedding the rows
        # in VALUES made SQLAlchemy compile a new statement per batch (~0.4 ms CPU per record).
        with self._sessions.begin() as s:
            s.execute(self._audit_insert, rows)
        return len(rows)

    def audit_count(self, tenant_id: str | None = None) -> int:
        with self._sessions() as s:
            q = select(func.count()).select_from(AuditRow)
            if tenant_id:
                q = q.where(AuditRow.tenant_id == tenant_id)
            return int(s.scalar(q) or 0)

    def usage(self, tenant_id: str | None, days: int) -> list[UsageRow]:
        """Calls per UTC day (the quota's day) for today and the ``days - 1`` days before it,
        each day whole: a rolling window would report only part of the oldest day.

        Grouped by the database: a year of a busy tenant is millions of audit rows, which a
        worker would otherwise pull into Python (holding the GIL its inference needs).
        """
        today = now().replace(hour=0, minute=0, second=0, microsecond=0)
        since = today - timedelta(days=days - 1)
        if self.engine.dialect.name == "postgresql":
            # In UTC whatever the session's time zone (Asia/Shanghai on many servers).
            day: Any = func.to_char(func.timezone("UTC", AuditRow.ts), "YYYY-MM-DD")
        else:
            day = func.substr(AuditRow.ts, 1, 10)  # SQLite keeps the UTC time as ISO text
        with self._sessions() as s:
            rows = s.execute(
                select(
                    day,
                    AuditRow.tenant_id,
                    AuditRow.model,
                    AuditRow.status,
                    func.count(),
                    func.sum(AuditRow.n_texts),
                    func.sum(AuditRow.chars),
                )
                .where(AuditRow.ts >= since)
                .where(AuditRow.tenant_id == tenant_id if tenant_id else text("1=1"))
                .group_by(day, AuditRow.tenant_id, AuditRow.model, AuditRow.status)
            )
            agg: dict[tuple[str, str, str], list[int]] = {}
            statuses: dict[tuple[str, str, str], dict[str, int]] = {}
            for d, tid, model, status, calls, n_texts, chars in rows:
                acc = agg.setdefault((str(d), tid, model), [0, 0, 0, 0])
                acc[0] += calls
                if status < 400:
                    acc[1] += int(n_texts or 0)
                    acc[2] += int(chars or 0)
                else:
                    acc[3] += calls
                    statuses.setdefault((str(d), tid, model), {})[str(status)] = calls
        return [
            UsageRow(d, t, m, v[0], v[1], v[2], v[3], statuses.get((d, t, m), {}))
            for (d, t, m), v in sorted(agg.items())
        ]
