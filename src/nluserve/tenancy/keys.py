"""API key format: ``nlu_<key id>_<secret><checksum>``, as GitHub tokens are built.

- the prefix lets secret scanners recognise a leaked key;
- the CRC32 checksum lets the server reject a mistyped key before any lookup. It detects typos
  only: it is over the key's own characters, so anyone can give a made-up key a valid one;
- the 30-character secret part carries 24 random base62 characters (> 142 bits, CSPRNG);
- only HMAC-SHA256(pepper, key) is stored: keys have full entropy, so a slow password hash
  adds nothing, and the pepper keeps a stolen database from confirming guesses offline.
"""

from __future__ import annotations

import hmac
import re
import secrets
import string
import zlib

PREFIX = "nlu"
ALPHABET = string.digits + string.ascii_letters
KEY_ID_LEN = 12
SECRET_LEN = 24
CHECK_LEN = 6
KEY_RE = re.compile(
    rf"^{PREFIX}_([0-9A-Za-z]{{{KEY_ID_LEN}}})_([0-9A-Za-z]{{{SECRET_LEN + CHECK_LEN}}})$"
)


def _base62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), CHECK_LEN)


def generate() -> tuple[str, str]:
    """A new (key id, full key)."""
    key_id = "".join(secrets.choice(ALPHABET) for _ in range(KEY_ID_LEN))
    secret = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LEN))
    body = f"{PREFIX}_{key_id}_{secret}"
    return key_id, body + _checksum(body)


def parse(key: str) -> str | None:
    """The key id of a well-formed key with a valid checksum, else None."""
    m = KEY_RE.match(key)
    if not m:
        return None
    body, check = key[:-CHECK_LEN], key[-CHECK_LEN:]
    if not hmac.compare_digest(_checksum(body), check):
        return None
    return m.group(1)


def is_key_id(key_id: str) -> bool:
    """Whether it could be a key id (generate()'s first part); others need no lookup."""
    return len(key_id) == KEY_ID_LEN and all(c in ALPHABET for c in key_id)


def looks_like_key(token: str) -> bool:
    """Whether a bearer credential is meant as an API key (rather than a JWT)."""
    return token.startswith(PREFIX + "_")


def digest(key: str, pepper: bytes) -> str:
    """What is stored: hex HMAC-SHA256 of the whole key under the server pepper."""
    return hmac.digest(pepper, key.encode(), "sha256").hex()  # one-shot: no HMAC object


def matches(key: str, stored: str, pepper: bytes) -> bool:
    """Constant-time comparison, so response time leaks nothing about the stored digest."""
    return hmac.compare_digest(digest(key, pepper), stored)
