"""Switching a SQLite file to WAL when several processes open it at once.

The switch needs an exclusive lock, and SQLite answers "database is locked" at once instead of
waiting in its busy handler when another connection is in the middle of its own first statements.
Workers that start together on a fresh file hit this. The mode is stored in the file, so the
first connection that succeeds settles it for all: the others retry until they see it.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

_RETRY_S = 0.01


def enable_wal(conn: Any, timeout_s: float = 30.0) -> None:
    """Put the database behind ``conn`` (a sqlite3 DB-API connection) in WAL mode."""
    deadline = time.monotonic() + timeout_s
    while True:
        cur = conn.cursor()
        try:
            if str(cur.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        finally:
            cur.close()
        time.sleep(_RETRY_S)
