"""API keys: checksummed format, peppered HMAC at rest, constant-time check, expiry, revocation."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from nluserve.db.repo import Repository
from nluserve.errors import StoreUnavailableError
from nluserve.tenancy import keys as keyfmt
from nluserve.tenancy.auth import AuthError
from nluserve.tenancy.values import KeyRecord
from tests.integration.tenancy.harness import (
    CACHE_S,
    TEXT,
    Stack,
    assert_problem,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)

PREDICT = "/v1/models/general/predict"


def _flip(key: str, index: int) -> str:
    """The key with one character replaced by another of the same alphabet."""
    old = key[index]
    new = "A" if old != "A" else "B"
    return key[:index] + new + key[index + 1 :]


class _CountingKeyLookups:
    """Wraps Repository.key to count the database lookups the authenticator makes."""

    def __init__(self, repo: Repository) -> None:
        self.inner = repo.key
        self.calls: list[str] = []

    def __call__(self, key_id: str) -> KeyRecord | None:
        self.calls.append(key_id)
        return self.inner(key_id)


def test_key_format_names_its_id_and_carries_a_checksum(stack: Stack) -> None:
    tenant, key = stack.tenant("acme")
    [record] = stack.tenancy.keys(tenant.id)
    assert key.startswith(f"nlu_{record.id}_")
    assert len(key) == len("nlu_") + keyfmt.KEY_ID_LEN + 1 + keyfmt.SECRET_LEN + keyfmt.CHECK_LEN
    assert keyfmt.parse(key) == record.id
    # Every single-character change anywhere in the id, secret or checksum breaks the checksum.
    for index in range(len("nlu_"), len(key)):
        if key[index] != "_":
            assert keyfmt.parse(_flip(key, index)) is None, index


def test_one_changed_character_is_rejected_before_any_lookup(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = stack.tenant("acme")
    lookups = _CountingKeyLookups(stack.tenancy.repo)
    monkeypatch.setattr(stack.tenancy.repo, "key", lookups)

    async def scenario() -> None:
        async with running(stack.app) as client:
            for index in (len(key) - 1, len(key) - 10, len("nlu_") + 2):
                r = await client.post(
                    PREDICT, json={"text": TEXT}, headers=bearer(_flip(key, index))
                )
                body = assert_problem(r, 401, "unauthorized")
                assert body["detail"] == "malformed API key"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]
            assert lookups.calls == []
            # no credential at all: a challenge without an error code (RFC 6750 3.1)
            r = await client.post(PREDICT, json={"text": TEXT})
            assert_problem(r, 401, "unauthorized")
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="nluserve"'
            ok = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert ok.status_code == 200, ok.text
            assert lookups.calls == [keyfmt.parse(key)]  # the counter does see real lookups

    asyncio.run(scenario())


def test_a_forged_key_with_a_valid_checksum_is_looked_up_and_refused(stack: Stack) -> None:
    _, key = stack.tenant("acme")
    key_id = keyfmt.parse(key)
    body = f"nlu_{key_id}_{'x' * keyfmt.SECRET_LEN}"
    forged = body + keyfmt._checksum(body)
    assert keyfmt.parse(forged) == key_id

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(forged))
            assert assert_problem(r, 401)["detail"] == "unknown API key"

    asyncio.run(scenario())


def test_only_the_peppered_hmac_is_stored_never_the_key(stack: Stack) -> None:
    tenant, key = stack.tenant("acme")
    [record] = stack.tenancy.keys(tenant.id)
    pepper = (stack.settings.data_dir / "secrets" / "pepper").read_text().strip().encode()
    assert record.digest != key
    assert record.digest == hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()
    assert record.digest != hashlib.sha256(key.encode()).hexdigest()  # a pepper, not a bare hash
    stack.tenancy.repo.close()
    secret = key.split("_")[2]
    files = sorted(stack.settings.data_dir.glob("nluserve.db*"))
    assert files
    for path in files:
        raw = path.read_bytes()
        assert key.encode() not in raw, path
        assert secret.encode() not in raw, path
        assert secret.encode("utf-16-le") not in raw, path


def test_digests_are_compared_in_constant_time(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = stack.tenant("acme")
    compared: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # the module keys.py calls into
    [record] = stack.tenancy.repo.keys(stack.tenancy.find("acme").id)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())
    assert (keyfmt.digest(key, stack.tenancy.pepper), record.digest) in compared


def test_an_expired_key_is_refused(stack: Stack) -> None:
    tenant, live = stack.tenant("acme")
    expired = stack.tenancy.create_key(tenant.id, "short", expires_days=1e-7).api_key  # ~9 ms
    later = stack.tenancy.create_key(tenant.id, "month", expires_days=30).api_key
    time.sleep(0.05)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(expired))
            assert assert_problem(r, 401)["detail"] == "API key expired"
            for good in (live, later):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(good))
                assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_two_authorization_headers_are_400_whichever_comes_first(stack: Stack) -> None:
    _, key = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app) as client:
            for pair in ((key, "junk"), ("junk", key), (key, key)):
                headers = [("authorization", f"Bearer {v}") for v in pair]
                r = await client.post(PREDICT, json={"text": TEXT}, headers=headers)
                assert "one Authorization header" in assert_problem(r, 400)["detail"]
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def test_a_revoked_key_is_refused_within_the_cache_time(stack: Stack) -> None:
    tenant, key = stack.tenant("acme")
    _, other = stack.tenant("other")
    key_id = keyfmt.parse(key)
    assert key_id is not None

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text
            stack.tenancy.revoke_key(key_id, tenant.id)
            await asyncio.sleep(CACHE_S + 0.1)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert assert_problem(r, 401)["detail"] == "API key revoked"
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(other))
            assert r.status_code == 200, r.text

    asyncio.run(scenario())


def _same_id_other_secret(key: str) -> str:
    """A well-formed key (valid checksum) with ``key``'s id and a made-up secret."""
    key_id = keyfmt.parse(key)
    body = f"nlu_{key_id}_{'x' * keyfmt.SECRET_LEN}"
    return body + keyfmt._checksum(body)


def test_only_the_right_secret_learns_that_a_key_is_revoked_or_expired(stack: Stack) -> None:
    # Key ids are not secret (admin listings, redacted keys): an id alone must not tell whether
    # its key exists, was revoked or has expired.
    tenant, _ = stack.tenant("acme")
    revoked = stack.tenancy.create_key(tenant.id, "old")
    stack.tenancy.revoke_key(revoked.record.id, tenant.id)
    expired = stack.tenancy.create_key(tenant.id, "short", expires_days=1e-7).api_key  # ~9 ms
    body = f"nlu_{'Q' * keyfmt.KEY_ID_LEN}_{'x' * keyfmt.SECRET_LEN}"
    unknown = body + keyfmt._checksum(body)  # an id no key has
    time.sleep(0.05)

    async def scenario() -> None:
        async with running(stack.app) as client:
            for guess in (_same_id_other_secret(revoked.api_key), _same_id_other_secret(expired)):
                r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(guess))
                assert assert_problem(r, 401, "unauthorized")["detail"] == "unknown API key"
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(unknown))
            assert assert_problem(r, 401, "unauthorized")["detail"] == "unknown API key"
            # the holder of the key is told why it no longer works
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(revoked.api_key))
            assert assert_problem(r, 401)["detail"] == "API key revoked"
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(expired))
            assert assert_problem(r, 401)["detail"] == "API key expired"

    asyncio.run(scenario())


def test_an_unknown_key_id_costs_the_same_hmac_as_a_known_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Were the HMAC skipped for an unknown id, the answer's time would tell ids apart.
    stack.tenant("acme")
    body = f"nlu_{'Q' * keyfmt.KEY_ID_LEN}_{'x' * keyfmt.SECRET_LEN}"
    unknown = body + keyfmt._checksum(body)
    digests: list[str] = []
    real = keyfmt.digest

    def spy(key: str, pepper: bytes) -> str:
        digests.append(key)
        return real(key, pepper)

    monkeypatch.setattr(keyfmt, "digest", spy)

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(unknown))
            assert assert_problem(r, 401)["detail"] == "unknown API key"

    asyncio.run(scenario())
    assert digests == [unknown]


def _made_up(i: int) -> str:
    """The ``i``-th well-formed key (valid checksum) whose id no key has."""
    body = f"nlu_{i:0{keyfmt.KEY_ID_LEN}d}_{'x' * keyfmt.SECRET_LEN}"
    return body + keyfmt._checksum(body)


@pytest.mark.slow
def test_a_flood_of_made_up_key_ids_evicts_no_real_key(tmp_path: Path) -> None:
    # Anyone can make up well-formed keys by the thousand; each unknown id is cached as a miss.
    # A real key cached before the flood must stay cached: here, the database then goes away
    # and the real key still authenticates from the cache, as it does in any outage.
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    _, key = stack.tenant("acme")
    flood = 60_000  # more ids than the whole cache once held before it was emptied

    async def scenario() -> None:
        async with running(stack.app) as client:
            r = await client.get("/v1/models", headers=bearer(key))
            assert r.status_code == 200, r.text
            auth = stack.app.state.gate.auth
            for i in range(flood):
                with pytest.raises(AuthError, match="unknown API key"):
                    await auth.authenticate("Bearer " + _made_up(i))
            # The database goes away: new connections cannot open it.
            database = stack.settings.data_dir / "nluserve.db"
            stack.tenancy.repo.engine.dispose()
            database.rename(database.with_name("moved.db"))
            database.mkdir()
            r = await client.get("/v1/models", headers=bearer(key))
            assert r.status_code == 200, r.text
            # The latest made-up ids are still known misses; the oldest ones were dropped.
            with pytest.raises(AuthError, match="unknown API key"):
                await auth.authenticate("Bearer " + _made_up(flood - 1))
            with pytest.raises(StoreUnavailableError):
                await auth.authenticate("Bearer " + _made_up(0))

    asyncio.run(scenario())


def test_last_used_is_recorded_within_seconds(stack: Stack) -> None:
    _, key = stack.tenant("acme")
    key_id = keyfmt.parse(key)
    assert key_id is not None
    assert [k.last_used_at for k in stack.tenancy.keys(stack.tenancy.find("acme").id)] == [None]

    async def scenario() -> datetime | None:
        async with running(stack.app) as client:
            used_at = datetime.now(UTC)
            r = await client.post(PREDICT, json={"text": TEXT}, headers=bearer(key))
            assert r.status_code == 200, r.text
            deadline = time.monotonic() + 6.5  # the app writes last-used times every 5 s
            while time.monotonic() < deadline:
                record = stack.tenancy.repo.key(key_id)
                assert record is not None
                if record.last_used_at is not None:
                    assert abs((record.last_used_at - used_at).total_seconds()) < 2
                    return record.last_used_at
                await asyncio.sleep(0.25)
            return None

    assert asyncio.run(scenario()) is not None, "last_used_at not written within 6.5 s"
