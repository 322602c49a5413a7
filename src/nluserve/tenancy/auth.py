"""Authentication: API keys or JWTs to a Principal, with caches of at most a few seconds.

Workers verify JWTs without a database round trip; revocations and tenant status come from
caches refreshed every ``cache_s`` seconds, so a disabled tenant or revoked key is locked out
everywhere within that time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from nluserve.db.repo import Repository
from nluserve.errors import NluserveError, StoreUnavailableError
from nluserve.tenancy import keys as keyfmt
from nluserve.tenancy.tokens import TokenCodec, TokenError
from nluserve.tenancy.values import KeyRecord, Tenant

log = logging.getLogger(__name__)
# How long cached credentials may stand in for an unreachable database.
STALE_MAX_S = 300.0
# The one answer to an API key whose id is unknown or whose secret is wrong.
UNKNOWN_KEY = "unknown API key"
# What an unknown key id's key is compared with: a hex SHA-256 digest no key has.
_NO_DIGEST = "0" * 64


class AuthError(NluserveError):
    """401: missing, malformed, unknown, expired or revoked credentials."""


class TenantDisabled(NluserveError):
    """403: the credentials are valid but the tenant is disabled."""


@dataclass(frozen=True)
class Principal:
    tenant: Tenant
    key_id: str | None
    token_scopes: tuple[str, ...] | None = None  # a token may narrow the tenant's scope

    def scopes(self) -> frozenset[str] | None:
        base = self.tenant.scope_set()
        if self.token_scopes is None or "*" in self.token_scopes or not self.token_scopes:
            return base
        narrowed = frozenset(self.token_scopes)
        return narrowed if base is None else base & narrowed


def _check_status(record: KeyRecord) -> None:
    if record.revoked_at is not None:
        raise AuthError("API key revoked")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise AuthError("API key expired")


V = TypeVar("V")


class _Ttl(Generic[V]):
    """Records by id for ``ttl`` seconds, and the ids found to have none.

    Anyone can make up ids, so the misses are kept apart, in a bounded map that drops its
    oldest first: a flood of made-up ids evicts other made-up ids, never a real key or tenant
    (which would push every real caller to the database). Found records are bounded by the
    database's rows; their bound is only a backstop."""

    def __init__(self, ttl: float, max_found: int = 100_000, max_missing: int = 10_000) -> None:
        self.ttl = ttl
        self.max_found = max_found
        self.max_missing = max_missing
        self.found: OrderedDict[str, tuple[float, V]] = OrderedDict()
        self.missing: OrderedDict[str, float] = OrderedDict()

    def get(self, key: str) -> tuple[bool, V | None]:
        return self.stale(key, self.ttl)

    def stale(self, key: str, max_age: float) -> tuple[bool, V | None]:
        """A cached value however old (up to ``max_age``), for when the database is down."""
        now = time.monotonic()
        hit = self.found.get(key)
        if hit is not None and now - hit[0] < max_age:
            return True, hit[1]
        missed_at = self.missing.get(key)
        if missed_at is not None and now - missed_at < max_age:
            return True, None
        return False, None

    def put(self, key: str, value: V | None) -> None:
        now = time.monotonic()
        if value is None:
            self.found.pop(key, None)  # deleted since
            _put_bounded(self.missing, key, now, self.max_missing)
        else:
            self.missing.pop(key, None)
            _put_bounded(self.found, key, (now, value), self.max_found)


K = TypeVar("K")


def _put_bounded(items: OrderedDict[str, K], key: str, value: K, bound: int) -> None:
    items[key] = value
    items.move_to_end(key)
    while len(items) > bound:
        items.popitem(last=False)


class Authenticator:
    def __init__(self, repo: Repository, pepper: bytes, codec: TokenCodec, cache_s: float) -> None:
        self.repo = repo
        self.pepper = pepper
        self.codec = codec
        self.cache_s = cache_s
        self._keys: _Ttl[KeyRecord] = _Ttl(cache_s)
        self._tenants: _Ttl[Tenant] = _Ttl(cache_s)
        self._revoked: set[str] = set()
        self._revoked_at = 0.0
        self._signing_at = 0.0
        self._used: dict[str, datetime] = {}

    async def refresh_signing_keys(self, force: bool = False) -> None:
        if force or time.monotonic() - self._signing_at > self.cache_s:
            window = timedelta(seconds=self.codec.ttl_s + 60)
            self.codec.load_keys(await asyncio.to_thread(self.repo.signing_keys, window))
            self._signing_at = time.monotonic()

    async def _refresh_retired_keys(self) -> None:
        """Reload the verifying keys every ``cache_s`` even when the token's kid is known, so
        a key rotated out stops verifying once its window closes; without this a worker kept
        trusting it until restart. A database outage keeps the keys already loaded."""
        try:
            await self.refresh_signing_keys()
        except Exception:
            self._signing_at = time.monotonic()  # tried: not again on every call of an outage
            log.warning("signing keys not reloaded: the database is unreachable")

    async def _revocations(self) -> set[str]:
        if time.monotonic() - self._revoked_at > self.cache_s:
            try:
                self._revoked = await asyncio.to_thread(self.repo.revoked_jtis)
            except Exception as exc:
                # No revocation can be written while the database is down: the last list holds.
                if time.monotonic() - self._revoked_at > STALE_MAX_S:
                    raise StoreUnavailableError("the database is unreachable") from exc
                return self._revoked
            self._revoked_at = time.monotonic()
        return self._revoked

    async def _cached(self, cache: _Ttl[V], key: str, load: Callable[[str], V | None]) -> V | None:
        """Fresh within ``cache_s``; during a database outage the last known value stands in
        (up to STALE_MAX_S), so an outage degrades to slightly stale status, not to errors."""
        hit, value = cache.get(key)
        if hit:
            return value
        try:
            value = await asyncio.to_thread(load, key)
        except Exception as exc:
            hit, value = cache.stale(key, STALE_MAX_S)
            if not hit:
                raise StoreUnavailableError("the database is unreachable") from exc
            return value
        cache.put(key, value)
        return value

    async def tenant(self, tenant_id: str) -> Tenant | None:
        return await self._cached(self._tenants, tenant_id, self.repo.tenant_by_id)

    async def _key(self, key_id: str) -> KeyRecord | None:
        return await self._cached(self._keys, key_id, self.repo.key)

    async def _usable_key(self, key_id: str) -> KeyRecord:
        """The key behind a verified token: the token proves the key was held, so its holder
        may learn that the key was revoked or has expired."""
        record = await self._key(key_id)
        if record is None:
            raise AuthError(UNKNOWN_KEY)
        _check_status(record)
        return record

    async def _active_tenant(self, tenant_id: str) -> Tenant:
        tenant = await self.tenant(tenant_id)
        if tenant is None:
            raise AuthError("unknown tenant")
        if not tenant.active:
            raise TenantDisabled("tenant disabled")
        return tenant

    async def verify_api_key(self, key: str) -> Principal:
        key_id = keyfmt.parse(key)
        if key_id is None:  # a typo: the checksum is over public data, so it stops no forgery
            raise AuthError("malformed API key")
        record = await self._key(key_id)
        # The secret is checked first, for an unknown id too (against a stand-in digest): key ids
        # are not secret (admin listings, redacted keys), and one alone must not tell, by the
        # answer or by its time, whether a key exists, is revoked or has expired.
        genuine = keyfmt.matches(key, record.digest if record else _NO_DIGEST, self.pepper)
        if record is None or not genuine:
            raise AuthError(UNKNOWN_KEY)
        _check_status(record)
        tenant = await self._active_tenant(record.tenant_id)
        self._used[key_id] = datetime.now(UTC)
        return Principal(tenant, key_id)

    async def verify_token(self, token: str) -> Principal:
        try:
            kid = self.codec.unverified_kid(token)
            if not self.codec.knows(kid):
                try:
                    await self.refresh_signing_keys()
                except Exception as exc:  # any JWT with a made-up kid must not reach a 500
                    raise StoreUnavailableError("the database is unreachable") from exc
            else:
                await self._refresh_retired_keys()
            claims = self.codec.verify(token)
        except TokenError as exc:
            raise AuthError(str(exc)) from exc
        if claims.jti in await self._revocations():
            raise AuthError("token revoked")
        if claims.key_id:
            await self._usable_key(claims.key_id)
        tenant = await self._active_tenant(claims.tenant_id)
        return Principal(tenant, claims.key_id, claims.scopes)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing credentials: send `Authorization: Bearer <api key or token>`")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise AuthError("use the Bearer scheme")
        if keyfmt.looks_like_key(credential):
            return await self.verify_api_key(credential)
        return await self.verify_token(credential)

    def return_used(self, used: dict[str, datetime]) -> None:
        """Put back last-used times that could not be written, to retry with the next batch."""
        for key_id, ts in used.items():
            self._used[key_id] = max(ts, self._used.get(key_id, ts))

    def take_used(self) -> dict[str, datetime]:
        used, self._used = self._used, {}
        return used
