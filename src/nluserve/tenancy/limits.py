"""What a tenant's settings may be, checked by the service for the CLI and the admin API alike.

The bounds are far above any real plan; they exist so a typo is an error and not a number the
database or the RateLimit headers cannot hold (a rate of 0 divides by zero, 1e-300 makes a
300-digit header, a negative burst refuses every call).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Collection, Iterable

from nluserve.errors import NluserveError

NAME_PATTERN = r"^[\w.\-]+$"
MAX_NAME = 100
MAX_QUOTA = 10**12
MIN_RATE = 1e-4  # one call per 2.8 hours
MAX_RATE = 1e6
MAX_BURST = 10**9
MAX_KEY_DAYS = 36500
_NAME = re.compile(NAME_PATTERN)
TASKS = ("ner", "classification")  # the manifest's tasks; a scope may name one for all its models


class InvalidValue(NluserveError):
    """A tenant or key setting outside what the service accepts."""


def check_tenant(
    name: str | None = None,
    quota_daily: int | None = None,
    rate: float | None = None,
    burst: int | None = None,
) -> None:
    """Raise InvalidValue naming the first setting out of bounds (None: not being set)."""
    # fullmatch: with match, "$" also matches before a trailing newline ("evil\n").
    if name is not None and (len(name) > MAX_NAME or not _NAME.fullmatch(name)):
        raise InvalidValue(
            f"tenant name must be 1-{MAX_NAME} letters, digits, '_', '.' or '-' (got {len(name)} "
            "characters)"
            if len(name) > MAX_NAME
            else f"tenant name {name!r} may hold only letters, digits, '_', '.' and '-'"
        )
    if name is not None and unicodedata.normalize("NFKC", name) != name:
        # "ａｄｍｉｎ" (full-width) would sit beside "admin" looking the same in every table.
        raise InvalidValue(
            f"tenant name {name!r} has full-width or compatibility characters: use "
            f"{unicodedata.normalize('NFKC', name)!r}"
        )
    if quota_daily is not None and not 0 <= quota_daily <= MAX_QUOTA:
        raise InvalidValue(f"daily quota must be 0 to {MAX_QUOTA:,}, not {quota_daily}")
    if rate is not None and not (math.isfinite(rate) and MIN_RATE <= rate <= MAX_RATE):
        raise InvalidValue(
            f"rate must be {MIN_RATE:g} to {MAX_RATE:g} calls per second, not {rate}"
        )
    if burst is not None and not 1 <= burst <= MAX_BURST:
        raise InvalidValue(f"burst must be 1 to {MAX_BURST:,}, not {burst}")


def check_key_name(name: str) -> None:
    """A label for people: printable, so it shows in tables and every database stores it."""
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidValue(
            f"key name must be at most {MAX_NAME} printable characters (no control characters)"
        )


def check_key_days(expires_days: float | None) -> None:
    """None: the key never expires; otherwise a positive, finite number of days."""
    if expires_days is not None and not (
        math.isfinite(expires_days) and 0 < expires_days <= MAX_KEY_DAYS
    ):
        raise InvalidValue(
            f"expiry must be more than 0 and at most {MAX_KEY_DAYS} days, not {expires_days} "
            "(leave it out for a key that does not expire)"
        )


def check_scopes(scopes: Iterable[str] | None, served: Collection[str] | None) -> None:
    """Each scope must be '*', a task, or a model this deployment serves (None: not checked).

    A scope naming no model would be stored and never match anything: a typo ("generl") locks
    the tenant out of the model it was meant to reach, and nobody is told why.
    """
    if scopes is None or served is None:
        return
    for scope in scopes:
        if scope == "*" or scope in TASKS or scope in served:
            continue
        raise InvalidValue(
            f"unknown scope {scope!r}: a scope is '*', a served model "
            f"({', '.join(sorted(served)) or 'none'}) or a task ({', '.join(TASKS)})"
        )
