"""The web console's files: plain ES modules, CSS and SVG shipped inside the package.

No build step and no CDN: what is in ``static/`` is exactly what the browser gets, so the
console works offline and under a CSP that allows nothing but this origin.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# Served with every console response. No 'unsafe-inline' anywhere: every script and style is a
# file from this origin, so injected markup can neither run code nor restyle the page.
SECURITY_HEADERS = {
    "Content-Security-Policy": "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        )
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    """One static file: its bytes, media type and a strong ETag."""

    name: str
    body: bytes
    media_type: str
    etag: str


@cache
def assets() -> dict[str, Asset]:
    """Every servable file in ``static/`` by name (a fixed list: nothing else is reachable)."""
    found: dict[str, Asset] = {}
    for entry in files(__name__).joinpath("static").iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if not entry.is_file() or suffix not in MEDIA_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[entry.name] = Asset(entry.name, body, MEDIA_TYPES[suffix], etag)
    return found
