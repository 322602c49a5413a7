"""The real app with tenancy on: migrated database, tenants, keys, and a client with the lifespan.

Everything goes through ``create_app(settings, inference, tenancy)`` as the CLI does; the models
are the deterministic gazetteers, so what is under test is admission, never inference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy import select

from nluserve.api.app import create_app
from nluserve.db.migrate import upgrade
from nluserve.db.tables import AuditRow
from nluserve.quota.base import Decision, Policy
from nluserve.quota.sqlite import SqliteQuotaStore
from nluserve.runtime.model import Model
from nluserve.services.inference import InferenceService
from nluserve.settings import Settings, ensure_data_dir
from nluserve.tenancy.service import TenancyService, database_url
from nluserve.tenancy.values import Tenant
from tests.support.gazetteer import gazetteer_model

GENERAL_WORDS = {"name": ["张三", "李四"], "address": ["北京", "上海"]}
MEDICAL_WORDS = {"dis": ["肺炎", "糖尿病"], "sym": ["发热"]}
TEXT = "张三在北京"
PROBLEM = "application/problem+json"
# Short, so tests that change a tenant or revoke a key wait a fraction of a second.
CACHE_S = 0.2


def served_models() -> dict[str, Model]:
    return {
        "general": gazetteer_model(GENERAL_WORDS, 64, name="general"),
        "medical": gazetteer_model(MEDICAL_WORDS, 64, name="medical"),
    }


def tenancy_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "models": [],
        "data_dir": data_dir,
        "auth": True,
        "auth_cache_s": CACHE_S,
        "inference_threads": 1,
        "graceful_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Stack:
    """A migrated database, the tenancy service over it and the app (lifespan not started)."""

    settings: Settings
    tenancy: TenancyService
    app: FastAPI

    def tenant(
        self,
        name: str,
        quota_daily: int = 10_000,
        rate: float = 1000.0,
        burst: int = 1000,
        scopes: tuple[str, ...] = (),
        admin: bool = False,
    ) -> tuple[Tenant, str]:
        """A new tenant and its first API key."""
        tenant, key = self.tenancy.create_tenant(name, quota_daily, rate, burst, scopes, admin)
        return tenant, key.api_key

    def private_key(self) -> tuple[str, Ed25519PrivateKey]:
        """(kid, key) of the current signing key, read from the database like an insider would."""
        for kid, private_pem, _public, current in self.tenancy.repo.signing_keys(timedelta(0)):
            if current:
                key = serialization.load_pem_private_key(private_pem.encode(), password=None)
                assert isinstance(key, Ed25519PrivateKey)
                return kid, key
        raise AssertionError("no current signing key")

    def public_pem(self, kid: str) -> str:
        for k, _private, public_pem, _current in self.tenancy.repo.signing_keys(timedelta(0)):
            if k == kid:
                return public_pem
        raise AssertionError(f"no signing key {kid}")

    def audit_texts(self, tenant_id: str) -> list[str | None]:
        with self.tenancy.repo.engine.connect() as conn:
            q = select(AuditRow.text).where(AuditRow.tenant_id == tenant_id)
            return [row[0] for row in conn.execute(q)]

    async def quota_used(self, tenant: Tenant) -> int:
        """What the SQLite quota store has counted for the tenant today (peek: counts nothing)."""
        store = SqliteQuotaStore(self.settings.data_dir / "quota.db")
        policy = Policy(tenant.quota_daily, tenant.rate_per_s, tenant.burst)
        try:
            decision: Decision = await store.peek(tenant.id, policy)
        finally:
            await store.close()
        return decision.daily_used


def build_stack(settings: Settings, models: dict[str, Model] | None = None) -> Stack:
    """Migrate (as ``nluserve migrate`` does), install a signing key, build the app."""
    ensure_data_dir(settings)
    upgrade(database_url(settings))
    tenancy = TenancyService.from_settings(settings)
    tenancy.ensure_signing_key()
    inference = InferenceService(models or served_models(), settings)
    return Stack(settings, tenancy, create_app(settings, inference, tenancy))


@asynccontextmanager
async def running(app: FastAPI, raise_errors: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """A client for ``app`` with its lifespan (batchers, gate, audit writer) running.

    ``raise_errors=False`` answers an unexpected exception with the app's 500, as a server
    would, instead of raising it in the test.
    """
    tenancy: TenancyService | None = app.state.tenancy
    if tenancy is not None:
        # The lifespan drops pooled connections without closing them (right after a fork);
        # here nothing forked, so close the ones the test's own setup opened.
        tenancy.repo.engine.dispose()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", timeout=30
        ) as client:
            yield client


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def assert_problem(
    response: httpx.Response, status: int, slug: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem with this status (and slug); returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    return body


def daily_remaining(response: httpx.Response) -> int:
    """``r`` of the "daily" item of the RateLimit header."""
    m = re.search(r'"daily";r=(\d+)', response.headers["RateLimit"])
    assert m, response.headers["RateLimit"]
    return int(m.group(1))


# JWT pieces, built by hand so a test controls every byte an attacker controls.


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    header, payload, signature = token.split(".")
    return json.loads(unb64url(header)), json.loads(unb64url(payload)), unb64url(signature)


def signing_input(header: dict[str, Any], claims: dict[str, Any]) -> str:
    h = b64url(json.dumps(header, separators=(",", ":")).encode())
    p = b64url(json.dumps(claims, separators=(",", ":")).encode())
    return f"{h}.{p}"


def sign_eddsa(header: dict[str, Any], claims: dict[str, Any], key: Ed25519PrivateKey) -> str:
    data = signing_input(header, claims)
    return f"{data}.{b64url(key.sign(data.encode()))}"


def sign_hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    data = signing_input(header, claims)
    return f"{data}.{b64url(hmac.new(secret, data.encode(), hashlib.sha256).digest())}"


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{signing_input(header, claims)}."


def valid_claims(settings: Settings, tenant_id: str, key_id: str | None) -> dict[str, Any]:
    """Claims the server would accept: attacks change one thing from here."""
    now = int(time.time())
    return {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": tenant_id,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "*",
        "key": key_id,
    }
