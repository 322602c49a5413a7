"""A bad NLUSERVE_REDIS_URL is refused when settings load, and the refusal never quotes it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from nluserve.settings import Settings


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://:s3cret-pw@cache:6379/0", "must start with redis://"),
        ("redis://:s3cret-pw@cache:6379/zero", "database must be a number"),
        ("unix://:s3cret-pw@/run/redis.sock?db=x", "database must be a number"),
    ],
)
def test_bad_redis_urls_are_refused_without_echoing_the_password(url: str, reason: str) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(redis_url=url)
    messages = " ".join(str(e["msg"]) for e in info.value.errors())
    assert reason in messages
    assert "s3cret-pw" not in messages


@pytest.mark.parametrize(
    "url", ["redis://cache:6379/2", "rediss://:pw@cache:6380", "unix:///run/redis.sock?db=1"]
)
def test_good_redis_urls_load(url: str) -> None:
    assert Settings(redis_url=url).redis_url is not None
