"""Running Alembic migrations once, safely, from any number of machines at the same time."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from nluserve.db.engine import make_engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# Any constant works; all nluserve instances must agree on it.
_ADVISORY_LOCK = 0x6E6C7573


def upgrade(url: str, target: str = "head") -> str:
    """Upgrade to ``target``; on PostgreSQL under an advisory lock so concurrent runs serialise."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_LOCK})
            try:
                cfg = Config()
                cfg.set_main_option("script_location", str(MIGRATIONS))
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, target)
                conn.commit()
            finally:
                if engine.dialect.name == "postgresql":
                    # After a failed migration the transaction is aborted: roll it back first, or
                    # the unlock itself fails and hides the migration's own error. (Closing the
                    # connection would release the session lock anyway.)
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_LOCK})
                    conn.commit()
        return current(engine)
    finally:
        engine.dispose()


def current(engine: Engine) -> str:
    """The revision the database is at ('' when never migrated)."""
    with engine.connect() as conn:
        try:
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
        except Exception:
            return ""
        return str(row[0]) if row else ""
