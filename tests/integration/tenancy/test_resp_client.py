"""The quota path's pipelined Redis connection (quota/resp.py) against a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from nluserve.quota.resp import PipelinedRedis, RespError, pack
from tests.support.services import RedisServer, running_redis


def on_uvloop(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run the test on uvloop, the loop uvicorn serves on (its transports differ from asyncio's)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        uvloop.run(fn(*args, **kwargs))

    return run


@contextlib.asynccontextmanager
async def connected(url: str, timeout_s: float = 0.5) -> AsyncIterator[PipelinedRedis]:
    client = PipelinedRedis(url, timeout_s)
    try:
        yield client
    finally:
        await client.close()


def test_pack_is_a_resp_array_of_bulk_strings() -> None:
    assert pack("SET", "k", 12) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n"
    assert pack("ECHO", "张三") == b"*2\r\n$4\r\nECHO\r\n$6\r\n\xe5\xbc\xa0\xe4\xb8\x89\r\n"


def test_a_malformed_url_fails_when_the_client_is_made() -> None:
    with pytest.raises(ValueError, match="must start with redis://"):
        PipelinedRedis("http://127.0.0.1:6379/0")
    with pytest.raises(ValueError, match="database must be a number"):
        PipelinedRedis("redis://127.0.0.1:6379/zero")
    with pytest.raises(ValueError, match="database must be a number"):
        PipelinedRedis("unix:///tmp/redis.sock?db=x")


@on_uvloop
async def test_concurrent_callers_each_get_their_own_reply(redis_server: RedisServer) -> None:
    async with connected(redis_server.url) as client:
        replies = await asyncio.gather(*(client.execute("ECHO", f"call-{i}") for i in range(500)))
        assert replies == [f"call-{i}".encode() for i in range(500)]
        counts = await asyncio.gather(*(client.execute("INCR", "n") for _ in range(300)))
        assert sorted(counts) == list(range(1, 301))


@on_uvloop
async def test_error_replies_raise_and_leave_the_connection_usable(
    redis_server: RedisServer,
) -> None:
    async with connected(redis_server.url) as client:
        await client.execute("SET", "s", "text")
        with pytest.raises(RespError, match=r"^WRONGTYPE"):
            await client.execute("HGET", "s", "f")
        assert await client.execute("GET", "s") == b"text"


@on_uvloop
async def test_scripts_survive_a_script_cache_flush(redis_server: RedisServer) -> None:
    script = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
    async with connected(redis_server.url) as client:
        assert await client.eval(script, ["c"], [2]) == 2
        await client.execute("SCRIPT", "FLUSH")  # what a Redis restart does to the cache
        assert await client.eval(script, ["c"], [3]) == 5


@on_uvloop
async def test_a_hung_server_times_out_then_the_next_call_reconnects(
    redis_server: RedisServer,
) -> None:
    async with (
        connected(redis_server.url, 0.2) as client,
        connected(redis_server.url, 5) as blocker,
    ):
        assert await client.execute("PING") == b"PONG"
        assert await blocker.execute("CLIENT", "PAUSE", "800", "ALL") == b"OK"
        calls = [client.execute("INCR", "late") for _ in range(5)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, TimeoutError) for o in outcomes)
        await asyncio.sleep(0.8)
        assert await client.execute("PING") == b"PONG"  # on a new connection


@on_uvloop
async def test_a_restart_fails_waiting_calls_and_later_calls_reconnect(
    redis_server: RedisServer,
) -> None:
    async with connected(redis_server.url) as client:
        await client.execute("SET", "k", "v")
        redis_server.restart()
        with pytest.raises(ConnectionError):
            await client.execute("GET", "k")  # the old connection is gone
        assert await client.execute("PING") == b"PONG"


@pytest.fixture
def guarded_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis with a password, a user with its own password and a unix socket."""
    directory = tmp_path / "redis-guarded"
    extra = ["--requirepass", "p@ss word", "--unixsocket", str(directory / "redis.sock")]
    extra += ["--unixsocketperm", "700", "--user", "quota", "on", ">q-secret", "~*", "+@all"]
    with running_redis(directory, extra=extra) as server:
        yield server


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p%40ss%20word@127.0.0.1:{port}/3",
        "redis://quota:q-secret@127.0.0.1:{port}/3",
        "unix://:p%40ss%20word@{sock}?db=3",
    ],
)
@on_uvloop
async def test_password_user_database_and_unix_socket(guarded_redis: RedisServer, url: str) -> None:
    sock = guarded_redis.directory / "redis.sock"
    async with connected(url.format(port=guarded_redis.port, sock=sock)) as client:
        await client.execute("SET", "where", "db3")
    async with (
        connected(f"redis://:p%40ss%20word@127.0.0.1:{guarded_redis.port}/3") as check,
        connected(f"redis://:p%40ss%20word@127.0.0.1:{guarded_redis.port}/0") as other,
    ):
        assert await check.execute("GET", "where") == b"db3"
        assert await other.execute("GET", "where") is None


@on_uvloop
async def test_a_wrong_password_is_a_connection_error(guarded_redis: RedisServer) -> None:
    async with connected(f"redis://:wrong@127.0.0.1:{guarded_redis.port}/0") as client:
        with pytest.raises(ConnectionError, match="AUTH"):
            await client.execute("PING")
