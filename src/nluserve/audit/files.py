"""The audit spool directory's files: records as JSON lines, made storable, written whole
(temp file, fsync, rename), and each process's journal (see recorder.py for who touches what)."""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import orjson

from nluserve.tenancy.values import AuditRecord

log = logging.getLogger("nluserve.audit")

# PostgreSQL cannot store every string Python can: psycopg refuses U+0000 in a text parameter
# (a DataError), a lone surrogate cannot be encoded as UTF-8, and a string longer than its
# varchar column is refused. One such record used to fail its whole batch and then block the
# spool, so what would be refused is made storable before the record is kept: NUL (and, in the
# short fields, lone surrogates) become U+FFFD, and the short fields are cut to their column's
# length (db/tables.py, AuditRow). The stored text then differs from what the client sent where
# it held NUL; it is otherwise the same. Request texts with lone surrogates are refused by the
# API (schemas.Text), and are not searched for here: a regex over 100k characters costs ~0.4 ms
# per call, ``"\0" in text`` 30 us. Integer fields are bounded by the call limits (settings).
_MAX_CHARS = {
    "request_id": 128,
    "record_id": 128,
    "tenant_id": 32,
    "key_id": 16,
    "route": 100,
    "model": 100,
    "task": 32,
}
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(rec: AuditRecord) -> AuditRecord:
    """``rec``, or a copy whose strings PostgreSQL can store (see above)."""
    changes: dict[str, str] = {}
    for name, limit in _MAX_CHARS.items():
        value = getattr(rec, name)
        if isinstance(value, str) and (len(value) > limit or _UNSTORABLE.search(value)):
            changes[name] = _UNSTORABLE.sub("\ufffd", value)[:limit]
    if rec.text is not None and "\x00" in rec.text:
        changes["text"] = rec.text.replace("\x00", "\ufffd")
    return replace(rec, **changes) if changes else rec  # type: ignore[arg-type]


_FILES = itertools.count()
_TAG: tuple[int, str] | None = None


def _process_tag() -> str:
    """The pid and 48 random bits, drawn again after a fork: unique per process start."""
    global _TAG
    pid = os.getpid()
    if _TAG is None or _TAG[0] != pid:
        _TAG = (pid, f"{pid}-{secrets.token_hex(6)}")
    return _TAG[1]


def _unique(prefix: str) -> str:
    return f"{prefix}-{_process_tag()}-{next(_FILES)}"


def _write_atomically(directory: Path, prefix: str, data: bytes) -> Path:
    """``<prefix>-<unique>.jsonl`` holding ``data``: written, fsynced, then renamed into place."""
    name = _unique(prefix)
    tmp = directory / f"{name}.tmp"  # a name no replayer looks for
    final = directory / f"{name}.jsonl"
    try:
        with tmp.open("xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(directory)
    return final


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` survive a machine crash."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dump(rec: AuditRecord) -> bytes:
    """One JSON line (orjson, a few microseconds: the journal writes one per call)."""
    return orjson.dumps(rec.__dict__) + b"\n"


def _load(line: str) -> AuditRecord:
    raw = json.loads(line)
    raw["ts"] = datetime.fromisoformat(raw["ts"])
    # Lines spooled before record ids existed: the request id was their key (migration 0002).
    raw.setdefault("record_id", raw["request_id"])
    # Lines spooled before records were made storable (a NUL in the text) are made so here.
    return _storable(AuditRecord(**raw))


def _lines(data: bytes) -> Iterator[bytes]:
    for line in data.split(b"\n"):
        if line.strip():
            yield line + b"\n"


def _parse(data: bytes) -> tuple[list[tuple[bytes, AuditRecord]], list[bytes]]:
    """(raw line, record) for every whole record, and the lines that are none.

    A line cut short (a full disk under a dying writer, perhaps in the middle of a character)
    cannot be read; it is kept, byte for byte, for the dead-letter file, never dropped.
    """
    records: list[tuple[bytes, AuditRecord]] = []
    unreadable: list[bytes] = []
    for raw in _lines(data):
        try:
            records.append((raw, _load(raw.decode("utf-8"))))
        except (ValueError, TypeError, KeyError):  # UnicodeDecodeError is a ValueError
            unreadable.append(raw)
    return records, unreadable


class _Journal:
    """One batch's records on disk while they wait in memory, locked by the living writer."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def create(cls, spool_dir: Path) -> _Journal:
        name = _unique("journal")
        new = spool_dir / f"{name}.new"
        path = spool_dir / f"{name}.jsonl"
        fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # a new file under a name nobody looks for
            os.rename(new, path)  # only now can a replayer see it, and it is locked
        except BaseException:
            os.close(fd)
            new.unlink(missing_ok=True)
            raise
        return cls(path, fd)

    @classmethod
    def replace(cls, spool_dir: Path) -> _Journal | None:
        """A new journal, or none (the kill guard lost, the records kept) if the disk refuses."""
        try:
            return cls.create(spool_dir)
        except OSError as exc:
            log.warning("audit journal unavailable", extra={"fields": {"error": str(exc)}})
            return None

    def append(self, rec: AuditRecord) -> None:
        # No fsync: this guards against the process dying, not the machine (the spool does).
        line = _dump(rec)
        try:
            written = os.write(self.fd, line)
        except OSError as exc:  # the record is still in memory; only the kill guard is lost
            log.warning("audit journal write failed", extra={"fields": {"error": str(exc)}})
            return
        if written != len(line):  # a full disk: the line is cut, and a replay keeps it aside
            log.warning("audit journal write cut short", extra={"fields": {"error": "ENOSPC"}})

    def discard(self) -> None:
        """Unlink while still locked, so no replayer can take the file for a dead writer's."""
        self.path.unlink(missing_ok=True)
        os.close(self.fd)

    def close(self) -> None:
        """Let go of the file, left on disk for a replayer (its records were not stored)."""
        os.close(self.fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
