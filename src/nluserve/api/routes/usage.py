"""GET /v1/usage (own) and the admin API under /admin."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from nluserve.api.deps import (
    JSON_BODY,
    NO_STORE,
    AdminDep,
    MeteredAdminDep,
    MeteredCallerDep,
    TenancyDep,
)
from nluserve.api.problems import ProblemError, responses
from nluserve.tenancy.limits import (
    MAX_BURST,
    MAX_KEY_DAYS,
    MAX_NAME,
    MAX_QUOTA,
    MAX_RATE,
    MIN_RATE,
    NAME_PATTERN,
    InvalidValue,
)
from nluserve.tenancy.service import Conflict, NotFound
from nluserve.tenancy.values import KeyRecord, Tenant, UsageRow

router = APIRouter(tags=["usage"], responses=responses(401, 403, 404, 409, 422))
admin = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses=responses(401, 403, 404, 409, 415, 422),
    dependencies=[JSON_BODY],
)

Days = Annotated[int, Query(ge=1, le=366, description="days back from today")]


class UsageOut(BaseModel):
    tenant: str
    days: int
    rows: list[dict[str, object]]


class TenantOut(BaseModel):
    id: str
    name: str
    status: str
    admin: bool
    quota_daily: int
    rate_per_s: float
    burst: int
    scopes: list[str]
    created_at: datetime


class TenantIn(BaseModel):
    # strict: "admin": "yes" or "quota_daily": true is a mistake to report, not to convert
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    quota_daily: int | None = Field(None, ge=0, le=MAX_QUOTA)
    rate_per_s: float | None = Field(None, ge=MIN_RATE, le=MAX_RATE, allow_inf_nan=False)
    burst: int | None = Field(None, gt=0, le=MAX_BURST)
    scopes: list[str] = Field(default_factory=list, description="models/tasks; empty = all")
    admin: bool = Field(
        False, description="its keys may manage tenants and keys (the /admin routes and console)"
    )


class TenantPatch(BaseModel):
    # strict: "admin": "yes" or "quota_daily": true is a mistake to report, not to convert
    model_config = ConfigDict(extra="forbid", strict=True)

    status: str | None = Field(None, pattern="^(active|disabled)$")
    quota_daily: int | None = Field(None, ge=0, le=MAX_QUOTA)
    rate_per_s: float | None = Field(None, ge=MIN_RATE, le=MAX_RATE, allow_inf_nan=False)
    burst: int | None = Field(None, gt=0, le=MAX_BURST)
    scopes: list[str] | None = None


class KeyOut(BaseModel):
    id: str
    tenant_id: str
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class NewKeyOut(BaseModel):
    key: KeyOut
    api_key: str = Field(description="shown once; store it now")


class NewTenantOut(BaseModel):
    tenant: TenantOut
    api_key: str


class KeyIn(BaseModel):
    # strict: "admin": "yes" or "quota_daily": true is a mistake to report, not to convert
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field("", max_length=100)
    expires_days: float | None = Field(None, gt=0, le=MAX_KEY_DAYS, allow_inf_nan=False)


def _tenant(t: Tenant) -> TenantOut:
    return TenantOut(
        id=t.id,
        name=t.name,
        status=t.status,
        admin=t.admin,
        quota_daily=t.quota_daily,
        rate_per_s=t.rate_per_s,
        burst=t.burst,
        scopes=list(t.scopes),
        created_at=t.created_at,
    )


def _key(k: KeyRecord) -> KeyOut:
    return KeyOut(
        id=k.id,
        tenant_id=k.tenant_id,
        name=k.name,
        created_at=k.created_at,
        expires_at=k.expires_at,
        revoked_at=k.revoked_at,
        last_used_at=k.last_used_at,
    )


def _rows(rows: list[UsageRow]) -> list[dict[str, object]]:
    return [r.__dict__ for r in rows]


def _invalid(exc: Exception) -> ProblemError:
    return ProblemError(422, "validation-error", "Invalid request", str(exc))


def _not_found(exc: Exception) -> ProblemError:
    return ProblemError(404, "not-found", "Not found", str(exc))


# A usage report is a database read: each takes a burst token (no daily unit).
@router.get(
    "/v1/usage",
    response_model=UsageOut,
    summary="Your usage by day and model",
    responses=responses(429, 503),
)
async def my_usage(caller: MeteredCallerDep, tenancy: TenancyDep, days: Days = 7) -> UsageOut:
    if caller.principal is None:
        raise ProblemError(401, "unauthorized", "Authentication required", "send an API key")
    rows = await asyncio.to_thread(tenancy.repo.usage, caller.principal.tenant.id, days)
    return UsageOut(tenant=caller.principal.tenant.name, days=days, rows=_rows(rows))


@admin.get("/tenants", response_model=list[TenantOut])
async def list_tenants(tenancy: TenancyDep, _: AdminDep) -> list[TenantOut]:
    return [_tenant(t) for t in await asyncio.to_thread(tenancy.repo.tenants)]


@admin.post("/tenants", response_model=NewTenantOut, status_code=201, dependencies=[NO_STORE])
async def create_tenant(body: TenantIn, tenancy: TenancyDep, _: AdminDep) -> NewTenantOut:
    try:
        tenant, key = await asyncio.to_thread(
            tenancy.create_tenant,
            body.name,
            body.quota_daily,
            body.rate_per_s,
            body.burst,
            body.scopes,
            body.admin,
        )
    except Conflict as exc:
        raise ProblemError(409, "conflict", "Tenant exists", str(exc)) from exc
    except InvalidValue as exc:
        raise _invalid(exc) from exc
    return NewTenantOut(tenant=_tenant(tenant), api_key=key.api_key)


@admin.get("/tenants/{tenant}", response_model=TenantOut)
async def get_tenant(tenant: str, tenancy: TenancyDep, _: AdminDep) -> TenantOut:
    try:
        return _tenant(await asyncio.to_thread(tenancy.find, tenant))
    except NotFound as exc:
        raise _not_found(exc) from exc


@admin.patch("/tenants/{tenant}", response_model=TenantOut)
async def update_tenant(
    tenant: str, body: TenantPatch, tenancy: TenancyDep, _: AdminDep
) -> TenantOut:
    try:
        return _tenant(await asyncio.to_thread(lambda: tenancy.update(tenant, **body.model_dump())))
    except NotFound as exc:
        raise _not_found(exc) from exc
    except InvalidValue as exc:
        raise _invalid(exc) from exc


@admin.get("/tenants/{tenant}/keys", response_model=list[KeyOut])
async def list_keys(tenant: str, tenancy: TenancyDep, _: AdminDep) -> list[KeyOut]:
    try:
        return [_key(k) for k in await asyncio.to_thread(tenancy.keys, tenant)]
    except NotFound as exc:
        raise _not_found(exc) from exc


@admin.post(
    "/tenants/{tenant}/keys", response_model=NewKeyOut, status_code=201, dependencies=[NO_STORE]
)
async def create_key(tenant: str, body: KeyIn, tenancy: TenancyDep, _: AdminDep) -> NewKeyOut:
    try:
        found = await asyncio.to_thread(tenancy.find, tenant)
        new = await asyncio.to_thread(tenancy.create_key, found.id, body.name, body.expires_days)
    except NotFound as exc:
        raise _not_found(exc) from exc
    except InvalidValue as exc:
        raise _invalid(exc) from exc
    return NewKeyOut(key=_key(new.record), api_key=new.api_key)


@admin.delete("/tenants/{tenant}/keys/{key_id}", response_model=KeyOut)
async def revoke_key(tenant: str, key_id: str, tenancy: TenancyDep, _: AdminDep) -> KeyOut:
    try:
        found = await asyncio.to_thread(tenancy.find, tenant)
        return _key(await asyncio.to_thread(tenancy.revoke_key, key_id, found.id))
    except NotFound as exc:
        raise _not_found(exc) from exc
    except InvalidValue as exc:  # the last key that reaches the admin API
        raise _invalid(exc) from exc


class RevokedTokenOut(BaseModel):
    revoked: str = Field(description="the revoked token's id (jti)")


@admin.delete("/tokens/{jti}", response_model=RevokedTokenOut)
async def revoke_token(
    jti: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$", description="the token's `jti`")],
    tenancy: TenancyDep,
    _: AdminDep,
) -> RevokedTokenOut:
    """Revoke one access token by its id; refused everywhere within the auth cache time."""
    return RevokedTokenOut(revoked=await asyncio.to_thread(tenancy.revoke_token, jti))


@admin.get("/usage", response_model=UsageOut, responses=responses(429, 503))
async def all_usage(
    tenancy: TenancyDep, _: MeteredAdminDep, days: Days = 7, tenant: str | None = None
) -> UsageOut:
    try:
        rows = await asyncio.to_thread(tenancy.usage, tenant, days)
    except NotFound as exc:
        raise _not_found(exc) from exc
    return UsageOut(tenant=tenant or "*", days=days, rows=_rows(rows))
