"""Short-lived access tokens (RFC 9068-style JWTs) signed with rotating Ed25519 keys.

One pinned algorithm (EdDSA): ``alg`` values such as ``none`` or ``HS256`` are refused before
any key is chosen, which closes the algorithm-confusion attacks of RFC 8725. Key-carrying
headers (jwk, jku, x5u, x5c) are refused outright, and ``kid`` must name a key we hold.
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt import exceptions as jwt_errors

from nluserve.errors import NluserveError

ALGORITHM = "EdDSA"
TYP = "at+jwt"
MAX_TTL_S = 3600  # settings.token_ttl_s is bounded by the same hour
_KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_FORBIDDEN_HEADERS = {"jwk", "jku", "x5u", "x5c", "x5t", "crit"}


class TokenError(NluserveError):
    """Why a token was refused (never sent to the client in detail beyond a category)."""


@dataclass(frozen=True)
class Claims:
    tenant_id: str
    key_id: str | None
    scopes: tuple[str, ...]
    jti: str
    expires_at: float


def new_signing_key() -> tuple[str, str, str]:
    """(kid, private PEM, public PEM) for a fresh Ed25519 key."""
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return secrets.token_urlsafe(12), private_pem, public_pem


class TokenCodec:
    """Issues with the current key; verifies with any key still in its verification window."""

    def __init__(self, issuer: str, audience: str, ttl_s: int) -> None:
        self.issuer = issuer
        self.audience = audience
        self.ttl_s = min(ttl_s, MAX_TTL_S)
        self._current: tuple[str, Ed25519PrivateKey] | None = None
        self._public: dict[str, Ed25519PublicKey] = {}

    def load_keys(self, keys: list[tuple[str, str, str, bool]]) -> None:
        public: dict[str, Ed25519PublicKey] = {}
        current = None
        for kid, private_pem, public_pem, is_current in keys:
            pub = serialization.load_pem_public_key(public_pem.encode())
            if isinstance(pub, Ed25519PublicKey):
                public[kid] = pub
            if is_current and current is None:
                priv = serialization.load_pem_private_key(private_pem.encode(), password=None)
                if isinstance(priv, Ed25519PrivateKey):
                    current = (kid, priv)
        self._public = public
        self._current = current

    def knows(self, kid: str) -> bool:
        return kid in self._public

    def issue(self, tenant_id: str, key_id: str | None, scopes: tuple[str, ...]) -> tuple[str, int]:
        """(token, expires_in seconds)."""
        if self._current is None:
            raise TokenError("no signing key; run `nluserve signing-key rotate`")
        kid, key = self._current
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": tenant_id,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
            "scope": " ".join(scopes),
            "key": key_id,
        }
        token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": TYP})
        return token, self.ttl_s

    def unverified_kid(self, token: str) -> str:
        """The header's kid after the header checks; raises TokenError."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenError("malformed token") from exc
        if header.get("alg") != ALGORITHM:
            raise TokenError("algorithm not allowed")
        if _FORBIDDEN_HEADERS & set(header):
            raise TokenError("key-carrying headers are not accepted")
        if str(header.get("typ", "")).lower() != TYP:
            raise TokenError("wrong token type")
        kid = header.get("kid")
        if not isinstance(kid, str) or not _KID.match(kid):
            raise TokenError("invalid kid")
        return kid

    def verify(self, token: str, verify_exp: bool = True) -> Claims:
        kid = self.unverified_kid(token)
        key = self._public.get(kid)
        if key is None:
            raise TokenError("unknown kid")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=5,
                options={
                    "require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"],
                    "verify_exp": verify_exp,
                },
            )
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {_reason(exc)}") from exc
        # This server issues tokens for at most an hour; a longer one was not made by it (a
        # leaked signing key would otherwise mint tokens valid for years).
        if not isinstance(claims["exp"], int | float) or not isinstance(claims["iat"], int | float):
            raise TokenError("invalid token: exp and iat must be numbers")
        if claims["exp"] - claims["iat"] > MAX_TTL_S + 5:
            raise TokenError("invalid token: lifetime over an hour")
        scope, key = claims.get("scope", ""), claims.get("key")
        # Only a leaked signing key could make these otherwise; such a token is refused, not
        # a TypeError deeper down (a list is no dict key). PyJWT checks sub and jti.
        if not isinstance(scope, str) or not (key is None or isinstance(key, str)):
            raise TokenError("invalid token: scope and key must be strings")
        return Claims(claims["sub"], key, tuple(scope.split()), claims["jti"], float(claims["exp"]))


def _reason(exc: jwt.PyJWTError) -> str:
    """What a client is told about its token, in words rather than PyJWT's class names."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "issued for another audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "issued by another issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the {exc.claim} claim is missing"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the signature does not verify"
    if isinstance(exc, jwt_errors.InvalidSubjectError | jwt_errors.InvalidJTIError):
        return "sub and jti must be strings"
    return "malformed"
