"""Engines: SQLite (WAL, busy timeout) for one machine, PostgreSQL for several."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, create_engine, event, make_url

from nluserve.db.sqlite_wal import enable_wal, private_file


def make_engine(url: str) -> Engine:
    """An engine with the pragmas/pool settings each backend needs."""
    if url.startswith("sqlite"):
        private_file(make_url(url).database)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(conn: Any, _record: Any) -> None:
            enable_wal(conn)  # readers never block the writer
            cur = conn.cursor()
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, pool_timeout=5)
