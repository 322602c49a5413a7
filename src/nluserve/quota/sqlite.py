"""SQLite quota store: exact across every worker of one machine.

Each decision is one ``BEGIN IMMEDIATE`` transaction (the write lock is taken before the
read), so two workers can never both read "499 used" and both admit call 500. The stdlib
sqlite3 driver is used directly: the transaction is three statements on a hot path.

It runs on the event loop (a thread hand-off would cost more than the decision), so a lock
held elsewhere must not stall it long: the busy timeout is short, and a decision that cannot
get the lock is ``QuotaUnavailable`` (503 with Retry-After, as for Redis), not a 30 s freeze of
every call on the worker. So is any other SQLite error (a full disk, an I/O error, a damaged
file): the file is this store's only authority, as the server is Redis's. ``peek`` (most GET routes)
reads in a deferred transaction, which takes no write lock in WAL mode.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from nluserve.db.sqlite_wal import enable_wal, private_file
from nluserve.quota.base import (
    CALL,
    PEEK,
    TOKEN,
    Decision,
    Policy,
    QuotaUnavailable,
    burst_retry_after,
    seconds_to_midnight,
    utc_day,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily (tenant TEXT, day TEXT, used INTEGER, PRIMARY KEY (tenant, day));
CREATE TABLE IF NOT EXISTS bucket (tenant TEXT PRIMARY KEY, tokens REAL, ts REAL);
"""
BUSY_TIMEOUT_S = 2.0
LOG_EVERY_S = 10.0  # one warning per outage period, not one per refused call

log = logging.getLogger(__name__)


class SqliteQuotaStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        private_file(path)
        self._local = threading.local()
        self._logged_at = float("-inf")
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                enable_wal(conn)
                conn.execute("PRAGMA synchronous=NORMAL")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
        return conn

    def _forget_conn(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _roll_back(self, conn: sqlite3.Connection) -> None:
        """End a failed transaction, whatever state the error left it in."""
        try:
            # After some errors (a full disk, an I/O error) SQLite has rolled back already, and
            # a ROLLBACK would raise "no transaction is active" in place of the real error.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            # Left in its transaction, this connection would refuse every later BEGIN.
            self._forget_conn()

    def _unavailable(self, exc: sqlite3.Error) -> QuotaUnavailable:
        """The 503 for a decision SQLite could not make. Beyond a busy lock, the client is told
        the error's name only; the message, which may name paths, goes to the log."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_BUSY:
            return QuotaUnavailable(f"quota store busy ({exc})", "sqlite")
        name = getattr(exc, "sqlite_errorname", None) or type(exc).__name__
        self._warn(f"quota store failed: {exc} ({name})")
        return QuotaUnavailable(f"quota store unavailable ({name})", "sqlite")

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(message, extra={"fields": {"path": str(self.path)}})

    def _decide(self, tenant_id: str, policy: Policy, takes: int) -> Decision:
        now = time.time()
        day = utc_day(now)
        try:
            conn = self._conn()
            conn.execute("BEGIN" if takes == PEEK else "BEGIN IMMEDIATE")
        except sqlite3.Error as exc:  # "database is locked" past the busy timeout, or worse
            raise self._unavailable(exc) from exc
        try:
            row = conn.execute(
                "SELECT used FROM daily WHERE tenant=? AND day=?", (tenant_id, day)
            ).fetchone()
            used = int(row[0]) if row else 0
            brow = conn.execute(
                "SELECT tokens, ts FROM bucket WHERE tenant=?", (tenant_id,)
            ).fetchone()
            tokens = (
                float(policy.burst)
                if brow is None
                else min(float(policy.burst), brow[0] + max(0.0, now - brow[1]) * policy.rate_per_s)
            )
            if used >= policy.quota_daily and takes != TOKEN:
                decision = Decision(False, "daily", used, tokens, day, seconds_to_midnight(now))
            elif tokens < 1.0:
                decision = Decision(
                    False, "burst", used, tokens, day, burst_retry_after(tokens, policy.rate_per_s)
                )
            elif takes == PEEK:
                decision = Decision(True, None, used, tokens, day)
            else:
                tokens -= 1.0
                if takes == CALL:
                    used += 1
                    conn.execute(
                        "INSERT INTO daily(tenant, day, used) VALUES (?, ?, 1) "
                        "ON CONFLICT(tenant, day) DO UPDATE SET used = used + 1",
                        (tenant_id, day),
                    )
                conn.execute(
                    "INSERT INTO bucket(tenant, tokens, ts) VALUES (?, ?, ?) "
                    "ON CONFLICT(tenant) DO UPDATE SET tokens=excluded.tokens, ts=excluded.ts",
                    (tenant_id, tokens, now),
                )
                decision = Decision(True, None, used, tokens, day)
            conn.execute("COMMIT")
            return decision
        except BaseException as exc:
            self._roll_back(conn)
            if isinstance(exc, sqlite3.Error):
                raise self._unavailable(exc) from exc
            raise

    async def acquire(self, tenant_id: str, policy: Policy) -> Decision:
        return self._decide(tenant_id, policy, CALL)

    async def take_token(self, tenant_id: str, policy: Policy) -> Decision:
        return self._decide(tenant_id, policy, TOKEN)

    async def peek(self, tenant_id: str, policy: Policy) -> Decision:
        return self._decide(tenant_id, policy, PEEK)

    async def release(self, tenant_id: str, day: str) -> None:
        # Best effort, as for Redis: a lost give-back errs towards the tenant's limit, never past it.
        try:
            self._conn().execute(
                "UPDATE daily SET used = used - 1 WHERE tenant=? AND day=? AND used > 0",
                (tenant_id, day),
            )
        except sqlite3.Error as exc:
            self._warn(f"quota unit not given back: {exc}")

    async def ping(self) -> None:
        # A read of the file (``SELECT 1`` reads none), so a damaged one is not reported ready.
        self._conn().execute("SELECT 1 FROM daily LIMIT 1").fetchall()

    async def close(self) -> None:
        self._forget_conn()
