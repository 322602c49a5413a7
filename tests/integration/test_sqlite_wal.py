"""Workers that open a fresh SQLite file at the same moment all start (no "database is locked")."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from nluserve.db.engine import make_engine
from nluserve.quota.sqlite import SqliteQuotaStore

THREADS = 8
ROUNDS = 40  # before the fix, 3 rounds in 40 failed on a 2-core machine


def _open_quota_store(path: Path) -> None:
    SqliteQuotaStore(path)


def _open_engine(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("opener", [_open_quota_store, _open_engine], ids=["quota", "engine"])
def test_simultaneous_first_opens_all_succeed_in_wal_mode(
    opener: Callable[[Path], None], tmp_path: Path
) -> None:
    for round_ in range(ROUNDS):
        path = tmp_path / f"r{round_}.db"
        barrier = threading.Barrier(THREADS)
        errors: list[BaseException] = []

        def start(
            path: Path = path,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                opener(path)
            except Exception as exc:  # collected and asserted below, in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=start) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"round {round_}: {errors[0]!r}"
        with sqlite3.connect(path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_database_files_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    import os

    old_umask = os.umask(0o022)  # what most systems start services with
    try:
        engine = make_engine(f"sqlite:///{tmp_path / 'nluserve.db'}")
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
        engine.dispose()
        SqliteQuotaStore(tmp_path / "quota.db")
        older = tmp_path / "older.db"
        older.touch(mode=0o644)  # as an earlier version left it
        make_engine(f"sqlite:///{older}").dispose()
    finally:
        os.umask(old_umask)
    for name in ("nluserve.db", "quota.db", "older.db"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600, name
