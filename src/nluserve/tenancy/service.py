"""Tenant administration shared by the CLI and the admin API."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nluserve.db.repo import LockoutRefused, Repository
from nluserve.errors import ConflictError, NluserveError
from nluserve.settings import Settings
from nluserve.tenancy import keys as keyfmt
from nluserve.tenancy.limits import (
    InvalidValue,
    check_key_days,
    check_key_name,
    check_scopes,
    check_tenant,
)
from nluserve.tenancy.tokens import MAX_TTL_S, TokenCodec, TokenError, new_signing_key
from nluserve.tenancy.values import KeyRecord, Tenant, UsageRow

_JTI = re.compile(r"[0-9a-f]{32}")  # tokens.py makes them as uuid4().hex; fullmatch only


class NotFound(NluserveError):
    """No such tenant or key (or not yours: the same answer, so ids cannot be probed)."""


Conflict = ConflictError  # a tenant of that name already exists


@dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    api_key: str  # shown once, never stored


def database_url(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url.get_secret_value()
    return f"sqlite:///{(settings.data_dir / 'nluserve.db').resolve()}"


def pepper_path(settings: Settings) -> Path:
    """Where the SQLite deployment keeps its generated pepper."""
    return settings.data_dir / "secrets" / "pepper"


def load_pepper(settings: Settings) -> bytes:
    """The HMAC pepper: configured, or generated once into the data directory (SQLite only)."""
    if settings.key_pepper:
        return settings.key_pepper.get_secret_value().encode()
    if not database_url(settings).startswith("sqlite"):
        raise NluserveError(
            "NLUSERVE_KEY_PEPPER is required with a shared database: every "
            "machine must hash API keys with the same pepper"
        )
    path = pepper_path(settings)
    if not path.exists():
        # Written whole under a private name, then linked into place: a second process
        # starting at the same moment (the CLI and the first `serve`) either wins the link or
        # reads the winner's pepper, never an empty file, and never fails.
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial = path.with_name(f".pepper-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(partial, path)
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    pepper = path.read_text().strip().encode()
    if not pepper:
        raise NluserveError(f"{path} is empty: restore it from a backup (API keys hash with it)")
    return pepper


class TenancyService:
    def __init__(
        self, repo: Repository, pepper: bytes, codec: TokenCodec, settings: Settings
    ) -> None:
        self.repo = repo
        self.pepper = pepper
        self.codec = codec
        self.settings = settings
        # The model names scopes are checked against, set by whoever knows what is served
        # (the app, the CLI); None leaves scopes unchecked.
        self.served_models: frozenset[str] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TenancyService:
        repo = Repository(database_url(settings))
        codec = TokenCodec(settings.jwt_issuer, settings.jwt_audience, settings.token_ttl_s)
        return cls(repo, load_pepper(settings), codec, settings)

    def find(self, id_or_name: str) -> Tenant:
        # A NUL would reach PostgreSQL, which refuses it (a 500), where SQLite finds nothing.
        tenant = self.repo.tenant(id_or_name) if id_or_name.isprintable() else None
        if tenant is None:
            raise NotFound(f"no tenant {id_or_name!r}")
        return tenant

    def create_tenant(
        self,
        name: str,
        quota_daily: int | None = None,
        rate: float | None = None,
        burst: int | None = None,
        scopes: Sequence[str] = (),
        admin: bool = False,
    ) -> tuple[Tenant, NewKey]:
        check_tenant(name, quota_daily, rate, burst)
        check_scopes(scopes, self.served_models)
        if self.repo.tenant(name) is not None:
            raise Conflict(f"tenant {name!r} exists")
        s = self.settings
        tenant = self.repo.create_tenant(
            name,
            quota_daily if quota_daily is not None else s.default_quota_daily,
            rate if rate is not None else s.default_rate_per_s,
            burst if burst is not None else s.default_burst,
            list(scopes),
            admin,
        )
        return tenant, self.create_key(tenant.id, "default")

    def create_key(
        self, tenant_id: str, name: str = "", expires_days: float | None = None
    ) -> NewKey:
        check_key_days(expires_days)
        check_key_name(name)
        tenant = self.find(tenant_id)
        key_id, key = keyfmt.generate()
        expires = (
            datetime.now(UTC) + timedelta(days=expires_days) if expires_days is not None else None
        )
        record = self.repo.add_key(
            tenant.id, key_id, keyfmt.digest(key, self.pepper), name, expires
        )
        return NewKey(record, key)

    def add_known_key(self, tenant_id: str, key: str, name: str) -> KeyRecord:
        key_id = _admin_key_id(key)
        return self.repo.add_key(tenant_id, key_id, keyfmt.digest(key, self.pepper), name, None)

    def keys(self, tenant_id: str) -> list[KeyRecord]:
        return self.repo.keys(self.find(tenant_id).id)

    def revoke_key(self, key_id: str, tenant_id: str | None = None) -> KeyRecord:
        record = self.repo.key(key_id) if keyfmt.is_key_id(key_id) else None
        if record is None or (tenant_id is not None and record.tenant_id != tenant_id):
            raise NotFound(f"no key {key_id!r}")
        try:
            revoked = self.repo.revoke_key(key_id)
        except LockoutRefused as exc:
            raise InvalidValue(
                f"key {key_id!r} is the last usable key of an active admin tenant: revoking it "
                "would lock every administrator out (create another admin key first)"
            ) from exc
        if revoked is None:
            raise NotFound(f"no key {key_id!r}")
        return revoked

    def update(self, tenant_id: str, **fields: object) -> Tenant:
        check_tenant(
            fields.get("name"),  # type: ignore[arg-type]
            fields.get("quota_daily"),  # type: ignore[arg-type]
            fields.get("rate_per_s"),  # type: ignore[arg-type]
            fields.get("burst"),  # type: ignore[arg-type]
        )
        check_scopes(fields.get("scopes"), self.served_models)  # type: ignore[arg-type]
        tenant = self.find(tenant_id)
        if (
            "name" in fields
            and fields["name"]
            and fields["name"] != tenant.name
            and self.repo.tenant(str(fields["name"]))
        ):
            raise Conflict(f"tenant {fields['name']!r} exists")
        try:
            updated = self.repo.update_tenant(tenant.id, **fields)
        except LockoutRefused as exc:
            # Nobody could enable it again but an operator on the server's own machine.
            raise InvalidValue(
                f"tenant {tenant.name!r} is the last active admin tenant with a usable key: "
                "disabling it would lock every administrator out (give another admin tenant "
                "a key first)"
            ) from exc
        if updated is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return updated

    def usage(self, tenant_id: str | None, days: int) -> list[UsageRow]:
        return self.repo.usage(self.find(tenant_id).id if tenant_id else None, days)

    def rotate_signing_key(self) -> str:
        """Add a key and retire only the keys older than it: two concurrent rotations (two
        first starts) leave the newer key current instead of retiring each other's."""
        kid, private_pem, public_pem = new_signing_key()
        created = self.repo.add_signing_key(kid, private_pem, public_pem)
        self.repo.retire_signing_keys(older_than=created)
        return kid

    def ensure_signing_key(self) -> None:
        if not self.repo.signing_keys(timedelta(0)):
            self.rotate_signing_key()

    def issue_token(self, tenant: Tenant, key_id: str | None) -> tuple[str, int]:
        self.codec.load_keys(self.repo.signing_keys(timedelta(seconds=self.codec.ttl_s + 60)))
        return self.codec.issue(tenant.id, key_id, tenant.scopes or ("*",))

    def revoke_token(self, token_or_jti: str) -> str:
        """Revoke one access token, given itself or its ``jti``; returns the jti. Tokens the
        CLI issues carry no key, so revoking a key does not reach them: this does."""
        if _JTI.fullmatch(token_or_jti):
            jti, expires = token_or_jti, time.time() + MAX_TTL_S + 60
        else:
            self.codec.load_keys(self.repo.signing_keys(timedelta(seconds=MAX_TTL_S + 60)))
            try:
                claims = self.codec.verify(token_or_jti, verify_exp=False)
            except TokenError as exc:
                raise NotFound("that is neither a token id nor a token of this server") from exc
            jti, expires = claims.jti, claims.expires_at
        self.repo.revoke_jti(jti, datetime.fromtimestamp(expires, UTC))
        return jti

    def bootstrap_admin(self) -> str | None:
        """On an empty database create the admin tenant; returns a new key to print once."""
        if self.repo.count_tenants():
            return None
        given = self.settings.admin_key.get_secret_value() if self.settings.admin_key else None
        if given is not None:
            # before the tenant exists: a restart with a corrected key must find no admin yet
            _admin_key_id(given)
        try:
            tenant = self.repo.create_tenant("admin", 10**9, 1000.0, 1000, ["*"], admin=True)
        except ConflictError:
            return None  # another process bootstrapped at the same moment
        if given is not None:
            self.add_known_key(tenant.id, given, "admin")
            return None
        return self.create_key(tenant.id, "admin").api_key


def _admin_key_id(key: str) -> str:
    """The id of NLUSERVE_ADMIN_KEY, or an error saying how to make a valid one."""
    key_id = keyfmt.parse(key)
    if key_id is None:
        raise NluserveError(
            "NLUSERVE_ADMIN_KEY is not a valid nluserve key (nlu_… with checksum); "
            "make one with `nluserve deploy admin-key`"
        )
    return key_id
