"""Database backups: SQLite through its online backup API (consistent while the service writes),
PostgreSQL through pg_dump. Restores are SQLite-only here; PostgreSQL restores use pg_restore.

The quota store (``quota.db``) is not backed up: it holds today's counters, which a restore
should not bring back. The key pepper (``secrets/pepper``) is not in the backup either, on
purpose: keep it in your secret store, since a backup together with it lets anyone who steals
both test guessed API keys offline. Nor are the JWT signing keys (``signing_keys``): with a
private key, whoever holds a backup could mint tokens for any tenant. Tokens live an hour at
most, so a restored database needs no old key; the server makes a new one when it starts.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from nluserve.db.sqlite_wal import private_file
from nluserve.errors import NluserveError

BACKUP_GLOB = "nluserve-*.db"
SIGNING_KEYS = "signing_keys"  # left out of every backup (see above)
PG_BACKUP_GLOB = "nluserve-*.dump"
_PAGES_PER_STEP = 1024  # lets writers in between steps instead of one long read lock


class BackupError(NluserveError):
    """A backup or restore that did not (or must not) happen."""


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL; None for other databases."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path.startswith(":memory:"):
        raise BackupError(f"cannot back up an in-memory SQLite database ({url})")
    return Path(path.split("?", 1)[0])


def _stamp() -> str:
    # Microseconds: two backups in one second must not overwrite each other.
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")


def _destination(out: str, suffix: str, directory: bool) -> Path:
    """A directory (existing, written with a trailing slash, or asked for: ``--keep``) gets a
    timestamped file."""
    path = Path(out)
    if directory and path.exists() and not path.is_dir():
        raise BackupError(f"--keep needs a directory, and {out} is a file")
    if directory or path.is_dir() or out.endswith(os.sep):
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path / f"nluserve-{_stamp()}{suffix}"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def backup(url: str, out: str, keep: int | None = None) -> Path:
    """Back up the database at ``url`` to ``out`` (a file, or a directory: an existing one, a
    path ending in ``/``, or any path with ``keep``); returns the file written."""
    if keep is not None and keep < 1:  # before anything is written
        raise BackupError("--keep must be at least 1")
    source = sqlite_path(url)
    if source is None:
        dest = _destination(out, ".dump", keep is not None)
        _pg_dump(url, dest)
        pattern = PG_BACKUP_GLOB
    else:
        if not source.exists():
            raise BackupError(f"no database at {source}: run `nluserve migrate` first")
        dest = _destination(out, ".db", keep is not None)
        _sqlite_copy(source, dest)
        _verify_sqlite(dest)
        pattern = BACKUP_GLOB
    if keep is not None and Path(out).is_dir():
        prune(dest.parent, keep, pattern)
    return dest


def _sqlite_copy(source: Path, dest: Path) -> None:
    """Page-by-page online copy into a temporary file, renamed into place only when complete."""
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst, pages=_PAGES_PER_STEP)
            # A backup is one self-contained file: no -wal/-shm beside it.
            dst.execute("PRAGMA journal_mode=DELETE")
            # secure_delete zeroes the freed pages, so the keys' bytes are gone, not just unlinked.
            dst.execute("PRAGMA secure_delete=ON")
            with dst:
                dst.execute(f"DELETE FROM {SIGNING_KEYS}")
        finally:
            dst.close()
    finally:
        src.close()
    os.replace(partial, dest)


def _verify_sqlite(path: Path) -> None:
    """Intact, and an nluserve database (it has a schema revision)."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"{path} is not a SQLite database: {exc}") from None
    try:
        (result,) = conn.execute("PRAGMA integrity_check").fetchone()
        if result != "ok":
            raise BackupError(f"{path} is damaged: {result}")
        if not conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone():
            raise BackupError(f"{path} is not an nluserve database (no alembic_version)")
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a usable SQLite database: {exc}") from None
    finally:
        conn.close()


def prune(directory: Path, keep: int, pattern: str = BACKUP_GLOB) -> list[Path]:
    """Delete all but the newest ``keep`` backups (names sort by their UTC timestamps)."""
    if keep < 1:
        raise BackupError("--keep must be at least 1")
    backups = sorted(directory.glob(pattern))
    removed = backups[:-keep]
    for path in removed:
        path.unlink()
    return removed


def restore(url: str, backup_file: Path) -> Path | None:
    """Replace the SQLite database at ``url`` with ``backup_file``; returns the safety copy of
    what was there (None when there was nothing). Stop the service first."""
    target = sqlite_path(url)
    if target is None:
        raise BackupError(
            "restore handles SQLite only; for PostgreSQL run: "
            "pg_restore --clean --if-exists --no-owner -d <database url without +psycopg> FILE"
        )
    if not backup_file.is_file():
        raise BackupError(f"no backup file at {backup_file}")
    if target.exists() and backup_file.resolve() == target.resolve():
        raise BackupError(f"{backup_file} is the database itself, not a backup of it")
    _verify_sqlite(backup_file)
    safety = None
    if target.exists():
        safety = target.with_name(f"{target.name}.pre-restore-{_stamp()}")
        _sqlite_copy(target, safety)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_file(target)  # it holds the token signing keys: never the umask's 0644
    src = sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            # Through the backup API, not a file copy: a -wal file left beside the database
            # would otherwise be replayed over the restored pages.
            src.backup(dst)
        finally:
            dst.close()
    finally:
        src.close()
    return safety


def pg_dump_command(url: str, dest: Path) -> tuple[list[str], dict[str, str]]:
    """argv and extra environment for pg_dump: the password travels in PGPASSWORD, never in
    argv (which every local user can read in /proc)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]  # postgresql+psycopg -> postgresql
    netloc, env = parts.netloc, {}
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = netloc.rsplit("@", 1)[1]
        netloc = f"{parts.username}@{host}" if parts.username else host
    plain = urlunsplit((scheme, netloc, parts.path, parts.query, parts.fragment))
    argv = [
        "pg_dump",
        "--format=custom",
        "--no-owner",
        f"--exclude-table-data={SIGNING_KEYS}",
        f"--file={dest}",
        f"--dbname={plain}",
    ]
    return argv, env


def _pg_dump(url: str, dest: Path) -> None:
    """pg_dump in its custom format into a temporary file, renamed into place when complete."""
    if shutil.which("pg_dump") is None:
        raise BackupError("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    partial = dest.with_name(f".{dest.name}.partial")
    partial.unlink(missing_ok=True)
    # Owner-only from the first byte: pg_dump truncates an existing file and keeps its mode.
    os.close(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    argv, extra = pg_dump_command(url, partial)
    proc = subprocess.run(
        argv, env={**os.environ, **extra}, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {proc.stderr.strip()}")
    partial.chmod(0o600)
    os.replace(partial, dest)
