"""SQLite files that several processes share: owner-only files, switched to WAL.

The switch needs an exclusive lock, and SQLite answers "database is locked" at once instead of
waiting in its busy handler when another connection is in the middle of its own first statements.
Workers that start together on a fresh file hit this. The mode is stored in the file, so the
first connection that succeeds settles it for all: the others retry until they see it.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
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


def private_file(database: str | os.PathLike[str] | None) -> None:
    """Create a SQLite file readable by its owner only (it holds key hashes and the token
    signing key), whatever the umask or the data directory's mode. SQLite gives its -wal and
    -shm files the database file's mode."""
    if not database or str(database) == ":memory:":
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    with contextlib.suppress(PermissionError):  # a file another user owns keeps its mode
        path.chmod(0o600)  # one an older version created with the umask's mode
