"""Access tokens through the real HTTP app: the happy path, rotation, and RFC 8725 attacks.

Each attack token differs from one the server accepts (see the control case) in exactly one
respect, and is signed with the server's own key wherever the attack allows it: a token that
only fails because an attacker cannot sign would pass even if the check under test were gone.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from nluserve.db.tables import SigningKeyRow
from nluserve.tenancy import keys as keyfmt
from nluserve.tenancy.service import NotFound, TenancyService
from nluserve.tenancy.values import Tenant
from tests.integration.tenancy.harness import (
    CACHE_S,
    TEXT,
    Stack,
    assert_problem,
    b64url,
    bearer,
    jwt_parts,
    running,
    sign_eddsa,
    sign_hs256,
    unsigned,
    valid_claims,
)

PREDICT = "/v1/models/general/predict"
TOKEN = "/v1/auth/token"


@dataclass
class Attack:
    """What an attacker holds: a genuine token, the public key, and (for the tests) ours."""

    stack: Stack
    tenant: Tenant
    victim: Tenant
    key_id: str
    genuine: str
    kid: str
    private: Ed25519PrivateKey

    def header(self, **changes: Any) -> dict[str, Any]:
        return {"alg": "EdDSA", "typ": "at+jwt", "kid": self.kid, **changes}

    def claims(self, **changes: Any) -> dict[str, Any]:
        return {**valid_claims(self.stack.settings, self.tenant.id, self.key_id), **changes}

    def signed(self, header: dict[str, Any] | None = None, **claims: Any) -> str:
        return sign_eddsa(header or self.header(), self.claims(**claims), self.private)


def _alg_none(casing: str) -> Callable[[Attack], str]:
    return lambda a: unsigned(a.header(alg=casing), a.claims())


def _hs256_with_public_key(a: Attack) -> str:
    return sign_hs256(a.header(alg="HS256"), a.claims(), a.stack.public_pem(a.kid).encode())


def _embedded_jwk(a: Attack) -> str:
    attacker = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(attacker)}
    return a.signed(a.header(jwk=jwk))


def _tampered_sub(a: Attack) -> str:
    header, _, signature = a.genuine.split(".")
    _, claims, _ = jwt_parts(a.genuine)
    forged = json.dumps({**claims, "sub": a.victim.id}, separators=(",", ":")).encode()
    return f"{header}.{b64url(forged)}.{signature}"


def _zero_signature(a: Attack) -> str:
    header, payload, _ = a.genuine.split(".")
    return f"{header}.{payload}.{b64url(bytes(64))}"


def _unknown_kid(a: Attack) -> str:
    return sign_eddsa(a.header(kid="not-a-key-we-hold"), a.claims(), Ed25519PrivateKey.generate())


ATTACKS: dict[str, tuple[Callable[[Attack], str], str]] = {
    "alg-none": (_alg_none("none"), "algorithm not allowed"),
    "alg-None": (_alg_none("None"), "algorithm not allowed"),
    "alg-NONE": (_alg_none("NONE"), "algorithm not allowed"),
    "hs256-with-public-key": (_hs256_with_public_key, "algorithm not allowed"),
    "embedded-jwk": (_embedded_jwk, "key-carrying headers are not accepted"),
    "jku": (
        lambda a: a.signed(a.header(jku="https://attacker.example/jwks.json")),
        "key-carrying headers are not accepted",
    ),
    "x5u": (
        lambda a: a.signed(a.header(x5u="https://attacker.example/cert.pem")),
        "key-carrying headers are not accepted",
    ),
    "kid-path-traversal": (
        lambda a: a.signed(a.header(kid="../../etc/passwd")),
        "invalid kid",
    ),
    "kid-sql-injection": (lambda a: a.signed(a.header(kid="' OR 1=1 --")), "invalid kid"),
    "expired": (
        lambda a: a.signed(
            iat=int(time.time()) - 600, nbf=int(time.time()) - 600, exp=int(time.time()) - 60
        ),
        "invalid token: expired",
    ),
    "nbf-in-future": (lambda a: a.signed(nbf=int(time.time()) + 120), "not valid yet"),
    "wrong-aud": (lambda a: a.signed(aud="someone-else"), "another audience"),
    "wrong-iss": (lambda a: a.signed(iss="https://attacker.example"), "another issuer"),
    "wrong-typ": (lambda a: a.signed(a.header(typ="JWT")), "wrong token type"),
    "no-typ": (
        lambda a: a.signed({k: v for k, v in a.header().items() if k != "typ"}),
        "wrong token type",
    ),
    "missing-exp": (
        lambda a: sign_eddsa(
            a.header(), {k: v for k, v in a.claims().items() if k != "exp"}, a.private
        ),
        "the exp claim is missing",
    ),
    "tampered-sub": (_tampered_sub, "signature does not verify"),
    "all-zero-signature": (_zero_signature, "signature does not verify"),
    "unknown-kid": (_unknown_kid, "unknown kid"),
    # What a leaked signing key would mint: a valid signature on a token good for a year.
    "lifetime-a-year": (
        lambda a: a.signed(exp=int(time.time()) + 365 * 86400),
        "lifetime over an hour",
    ),
}


async def _issue(client: httpx.AsyncClient, api_key: str) -> str:
    r = await client.post(TOKEN, headers=bearer(api_key))
    assert r.status_code == 200, r.text
    token: str = r.json()["access_token"]
    return token


def _attack(stack: Stack) -> tuple[Attack, str]:
    tenant, key = stack.tenant("mallory")
    victim, _ = stack.tenant("victim")
    kid, private = stack.private_key()
    key_id = keyfmt.parse(key)
    assert key_id is not None
    return Attack(stack, tenant, victim, key_id, "", kid, private), key


def test_a_hand_built_token_is_accepted_so_each_attack_differs_in_one_thing(
    stack: Stack,
) -> None:
    attack, _ = _attack(stack)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(attack.signed()))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_token_is_refused_with_401(stack: Stack, name: str) -> None:
    attack, key = _attack(stack)
    build, reason = ATTACKS[name]

    async def scenario() -> None:
        async with running(stack.app) as client:
            attack.genuine = await _issue(client, key)
            ok = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(attack.genuine))
            assert ok.status_code == 200, ok.text
            forged = build(attack)
            for path, body in ((PREDICT, {"text": TEXT}), ("/v1/usage", None)):
                if body is None:
                    r = await client.get(path, headers=bearer(forged))
                else:
                    r = await client.post(path, json=body, headers=bearer(forged))
                problem = assert_problem(r, 401, "unauthorized")
                assert reason in problem["detail"], problem
                assert r.headers["WWW-Authenticate"].startswith("Bearer")

    asyncio.run(scenario())


def test_token_endpoint_issues_a_short_lived_eddsa_at_jwt(stack: Stack) -> None:
    tenant, key = stack.tenant("acme", scopes=("general",))
    key_id = keyfmt.parse(key)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(TOKEN, headers=bearer(key))
            assert r.status_code == 200, r.text
            assert r.headers["cache-control"] == "no-store"  # RFC 6749 5.1
            body = r.json()
            assert body["token_type"] == "Bearer"
            assert 0 < body["expires_in"] <= 3600
            assert body["scope"] == "general"
            token = body["access_token"]
            header, claims, signature = jwt_parts(token)
            kid, _ = stack.private_key()
            assert header == {"alg": "EdDSA", "typ": "at+jwt", "kid": kid}
            assert {"iss", "aud", "sub", "scope", "iat", "nbf", "exp", "jti"} <= claims.keys()
            assert claims["iss"] == stack.settings.jwt_issuer
            assert claims["aud"] == stack.settings.jwt_audience
            assert claims["sub"] == tenant.id and claims["key"] == key_id
            assert claims["scope"] == "general"
            now = time.time()
            assert claims["iat"] <= now + 1 and claims["nbf"] <= now + 1
            assert claims["exp"] - claims["iat"] == body["expires_in"]
            assert len(signature) == 64
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert r.status_code == 200, r.text
            # A token is not a key: it cannot mint more tokens, is told so as a refused
            # credential, and the refusal costs no burst token (nothing was served).
            r = await client.post(TOKEN, headers=bearer(token))
            assert "not a token" in assert_problem(r, 401)["detail"]
            assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            assert "RateLimit" not in r.headers
            # A bucket that does not refill within the test: 5, one token issued, then the
            # refused call, then a usage call that takes its own.
            _, slow_key = stack.tenant("slow", rate=0.01, burst=5)
            slow_token = await _issue(client, slow_key)
            assert_problem(await client.post(TOKEN, headers=bearer(slow_token)), 401)
            r = await client.get("/v1/usage", headers=bearer(slow_key))
            assert '"burst";r=3;' in r.headers["RateLimit"], r.headers["RateLimit"]

    asyncio.run(scenario())


def test_a_revoked_jti_is_refused_within_the_cache_time(stack: Stack) -> None:
    _, key = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app) as client:
            token = await _issue(client, key)
            other = await _issue(client, key)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert r.status_code == 200, r.text
            _, claims, _ = jwt_parts(token)
            stack.tenancy.repo.revoke_jti(claims["jti"], datetime.fromtimestamp(claims["exp"], UTC))
            await asyncio.sleep(CACHE_S + 0.1)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert assert_problem(r, 401)["detail"] == "token revoked"
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(other))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_a_disabled_tenants_token_is_refused(stack: Stack) -> None:
    # Valid credentials of a disabled tenant are 403 tenant-disabled by design (auth.py), not 401.
    tenant, key = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app) as client:
            token = await _issue(client, key)
            stack.tenancy.update(tenant.id, status="disabled")
            await asyncio.sleep(CACHE_S + 0.1)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert_problem(r, 403, "tenant-disabled")
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert_problem(r, 403, "tenant-disabled")
            stack.tenancy.update(tenant.id, status="active")
            await asyncio.sleep(CACHE_S + 0.1)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_a_token_from_a_revoked_key_is_refused(stack: Stack) -> None:
    tenant, key = stack.tenant("acme")
    key_id = keyfmt.parse(key)
    assert key_id is not None
    second = stack.tenancy.create_key(tenant.id, "second").api_key

    async def scenario() -> None:
        async with running(stack.app) as client:
            token = await _issue(client, key)
            sibling = await _issue(client, second)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert r.status_code == 200, r.text
            stack.tenancy.revoke_key(key_id, tenant.id)
            await asyncio.sleep(CACHE_S + 0.1)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
            assert assert_problem(r, 401)["detail"] == "API key revoked"
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(sibling))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_tokens_survive_signing_key_rotation_and_new_ones_use_the_new_kid(stack: Stack) -> None:
    _, key = stack.tenant("acme")
    old_kid, _ = stack.private_key()
    # The rotation runs elsewhere (another process, the CLI): its own service, same database.
    operator = TenancyService.from_settings(stack.settings)

    async def scenario() -> None:
        async with running(stack.app) as client:
            before = await _issue(client, key)
            assert jwt_parts(before)[0]["kid"] == old_kid
            new_kid = operator.rotate_signing_key()
            assert new_kid != old_kid
            elsewhere, _ = operator.issue_token(stack.tenancy.find("acme"), keyfmt.parse(key))
            assert jwt_parts(elsewhere)[0]["kid"] == new_kid
            await asyncio.sleep(CACHE_S + 0.1)
            # This worker learns the new kid from the database when a token first names it.
            for token in (elsewhere, before):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
                assert r.status_code == 200, r.text
            after = await _issue(client, key)
            assert jwt_parts(after)[0]["kid"] == new_kid
            for token in (after, before):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
                assert r.status_code == 200, r.text

    asyncio.run(scenario())
    operator.repo.close()


def test_a_rotated_out_key_stops_verifying_once_its_window_closes(stack: Stack) -> None:
    attack, _ = _attack(stack)
    operator = TenancyService.from_settings(stack.settings)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(attack.signed()))
            assert r.status_code == 200, r.text
            operator.rotate_signing_key()
            # The old key's verify window (token lifetime + 60 s) is over: as if rotated long ago.
            with operator.repo.engine.begin() as conn:
                conn.execute(
                    update(SigningKeyRow)
                    .where(SigningKeyRow.kid == attack.kid)
                    .values(retired_at=datetime.now(UTC) - timedelta(hours=2))
                )
            await asyncio.sleep(CACHE_S + 0.1)
            # A token signed with the old key (held by whoever copied it) names a kid this
            # worker still knew: the worker must reload the keys anyway.
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(attack.signed()))
            assert "unknown kid" in assert_problem(r, 401)["detail"]

    asyncio.run(scenario())
    operator.repo.close()


def test_a_token_without_a_key_is_revoked_by_itself_or_by_its_id(stack: Stack) -> None:
    tenant, _ = stack.tenant("cli-user")
    _, admin_key = stack.tenant("ops", admin=True)
    operator = TenancyService.from_settings(stack.settings)
    # What `nluserve token issue` hands out: no API key behind it to revoke.
    by_token, _ = operator.issue_token(tenant, None)
    by_id, _ = operator.issue_token(tenant, None)
    jti = jwt_parts(by_id)[1]["jti"]

    async def scenario() -> None:
        async with running(stack.app) as client:
            for token in (by_token, by_id):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
                assert r.status_code == 200, r.text
            assert operator.revoke_token(by_token) == jwt_parts(by_token)[1]["jti"]
            r = await client.delete(f"/admin/tokens/{jti}", headers=bearer(admin_key))
            assert r.status_code == 200 and r.json() == {"revoked": jti}, r.text
            await asyncio.sleep(CACHE_S + 0.1)
            for token in (by_token, by_id):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(token))
                assert assert_problem(r, 401)["detail"] == "token revoked"
            # Only an admin revokes; a tenant's own key may not.
            r = await client.delete(f"/admin/tokens/{jti}", headers=bearer(by_id))
            assert r.status_code == 401

    asyncio.run(scenario())
    with pytest.raises(NotFound):
        operator.revoke_token("eyJhbGciOiJFZERTQSJ9.e30.bm90IGEgc2lnbmF0dXJl")
    operator.repo.close()
