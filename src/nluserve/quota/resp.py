"""One pipelined Redis connection for the quota scripts: the hot path of every admitted call.

Why not redis-py's asyncio client here: on a 2-core VM it spent about 240 µs of CPU per
``EVALSHA`` (pool checkout and release, several layers of command packing, observability
hooks, a ``wait_for`` per read) against about 90 µs inside redis-server, and the pool opens a
connection per concurrent caller. Redis answers the commands of one connection in order, so every
coroutine of a worker can share one connection: a call writes its command and waits on a
future, and replies resolve the futures first in, first out. Replies are parsed by ``hiredis``
(the C parser redis-py itself uses).

Failure model: a connection that errs or times out is closed and every call waiting on it
fails with ``ConnectionError``/``TimeoutError``; the next call reconnects. After a timeout the
order of replies on that connection can no longer be trusted, which is why it is not reused.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from typing import Any, cast
from urllib.parse import SplitResult, unquote, urlsplit

import hiredis


class RespError(Exception):
    """Redis answered with an error reply (e.g. ``NOSCRIPT``, ``WRONGTYPE``)."""


def pack(*args: bytes | str | int | float) -> bytes:
    """A RESP array of bulk strings: the one request format Redis accepts from clients."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """One connection and the calls waiting on it, oldest first."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(replyError=RespError)
        self.waiting: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                if not self.waiting:  # a reply nobody asked for: the stream is out of step
                    raise hiredis.ProtocolError("unexpected reply")
                fut = self.waiting.popleft()
                if not fut.done():
                    fut.set_result(reply)
        except hiredis.ProtocolError as exc:
            self.fail(ConnectionError(f"redis protocol error: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(ConnectionError("redis connection lost"))

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, command: bytes) -> asyncio.Future[Any]:
        assert self.transport is not None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting.append(fut)
        self.transport.write(command)
        return fut

    def fail(self, exc: Exception) -> None:
        """Close the connection and fail every call still waiting on it."""
        if self.transport is not None:
            self.transport.abort()  # later replies would answer the wrong callers
        while self.waiting:
            fut = self.waiting.popleft()
            if not fut.done():
                fut.set_exception(exc)


class PipelinedRedis:
    """``redis://``, ``rediss://`` and ``unix://`` URLs with optional user, password and db."""

    def __init__(self, url: str, timeout_s: float = 0.5) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._parts, self._db = parse_url(url)  # now: a malformed URL fails at start-up
        self._conn: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._shas: dict[str, str] = {}

    async def execute(self, *args: bytes | str | int | float) -> Any:
        """Send one command and wait for its reply; error replies raise ``RespError``."""
        conn = self._conn
        if conn is None or not conn.usable:
            conn = await self._connect()
        fut = conn.send(pack(*args))
        timer = fut.get_loop().call_later(self.timeout_s, self._expire, fut, conn)
        try:
            reply = await fut
        finally:
            timer.cancel()
        if isinstance(reply, RespError):
            raise reply
        return reply

    async def eval(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """``EVALSHA``, falling back to ``EVAL`` (which caches the script) after a restart."""
        sha = self._shas.get(script)
        if sha is None:  # Redis names scripts by their SHA-1
            sha = self._shas[script] = hashlib.sha1(script.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except RespError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        return await self.execute("EVAL", script, len(keys), *keys, *args)

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.fail(ConnectionError("redis client closed"))
            self._conn = None

    def _expire(self, fut: asyncio.Future[Any], conn: _Protocol) -> None:
        if not fut.done():
            conn.fail(TimeoutError(f"redis did not answer within {self.timeout_s} s"))

    async def _connect(self) -> _Protocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # one connection, however many callers arrive at once
            if self._conn is not None and self._conn.usable:
                return self._conn
            conn = await asyncio.wait_for(self._open(), self.timeout_s)
            try:
                await self._handshake(conn)
            except BaseException:
                conn.fail(ConnectionError("redis handshake failed"))
                raise
            self._conn = conn
            return conn

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        parts = self._parts
        conn: _Protocol
        if parts.scheme == "unix":
            _, conn = await loop.create_unix_connection(_Protocol, unquote(parts.path))
        else:
            tls = ssl.create_default_context() if parts.scheme == "rediss" else None
            _, conn = await loop.create_connection(
                _Protocol, parts.hostname or "localhost", parts.port or 6379, ssl=tls
            )
        return conn

    async def _handshake(self, conn: _Protocol) -> None:
        """AUTH and SELECT before any caller's command goes out on this connection."""
        parts = self._parts
        commands: list[tuple[str, ...]] = []
        if parts.password is not None:
            user = unquote(parts.username) if parts.username else None
            password = unquote(parts.password)
            commands.append(("AUTH", user, password) if user else ("AUTH", password))
        if self._db:
            commands.append(("SELECT", str(self._db)))
        for command in commands:
            reply = await asyncio.wait_for(conn.send(pack(*command)), self.timeout_s)
            if isinstance(reply, RespError):
                raise ConnectionError(f"redis {command[0]} failed: {reply}")


def parse_url(url: str) -> tuple[SplitResult, int]:
    """The URL's parts and its database number. Errors never quote the URL: it may hold a password."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must start with redis://, rediss:// or unix://")
    return parts, _db(parts.path if parts.scheme != "unix" else "", parts.query)


def _db(path: str, query: str) -> int:
    """The database number from ``?db=N`` or the path (``redis://host/N``); 0 if neither."""
    for item in query.split("&"):
        name, _, value = item.partition("=")
        if name == "db" and value:
            return _number(value)
    return _number(path.strip("/") or "0")


def _number(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"the Redis database must be a number, not {value!r}")
    return int(value)
