"""Batched audit writes with a local spool for database outages.

Calls append to an in-memory buffer and, with one unsynced ``write``, to this process's journal
file, before the call is answered. A background task writes batches; if the database is
unreachable the batch goes to a JSON-lines spool file in the data directory and is replayed
when the database is back. Inserts ignore record ids already stored (one per call, made by the
server: clients' request ids need not be unique), so a replay after a partial failure never
duplicates a record.

The journal is what survives a worker killed (SIGKILL, OOM) with a batch not yet written: the
kernel keeps what was written, and the other workers sharing the data directory replay the
journals whose writer is gone. A writer holds an exclusive ``flock`` on its journal while it
lives, so a journal that can be locked is a dead process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import logging
import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

import orjson

from nluserve.tenancy.values import AuditRecord

log = logging.getLogger("nluserve.audit")


class AuditSink(Protocol):
    def insert_audit(self, records: list[AuditRecord]) -> int: ...


class AuditRecorder:
    def __init__(
        self, sink: AuditSink, spool_dir: Path, interval_s: float = 0.5, batch: int = 500
    ) -> None:
        self.sink = sink
        self.spool_dir = spool_dir
        self.interval_s = interval_s
        self.batch = batch
        self._buffer: list[AuditRecord] = []
        self._journal: _Journal | None = None
        self._journaling = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        spool_dir.mkdir(parents=True, exist_ok=True)

    def record(self, rec: AuditRecord) -> None:
        self._buffer.append(rec)
        if self._journal is not None:
            self._journal.append(rec)
        if len(self._buffer) >= self.batch:
            self._wake.set()

    def record_call(self, **fields: object) -> None:
        self.record(AuditRecord(**fields))  # type: ignore[arg-type]

    def start(self) -> None:
        """In the serving process (after any fork): the journal is this process's own."""
        self._journal = _Journal.create(self.spool_dir)
        self._journaling = True
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        self._journaling = False
        if self._journal is not None:
            self._journal.discard()  # everything in it was just written or spooled
            self._journal = None

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        journal = None
        if batch and self._journaling:
            # The batch's records are exactly those in the journal: later ones go to a new one.
            journal, self._journal = self._journal, _Journal.replace(self.spool_dir)
        if batch:
            try:
                await asyncio.to_thread(self.sink.insert_audit, batch)
            except Exception as exc:  # the database is down: keep every record on disk
                log.warning(
                    "audit database unavailable, spooling",
                    extra={"fields": {"records": len(batch), "error": type(exc).__name__}},
                )
                await asyncio.to_thread(self._spool, batch)
                if journal is not None:
                    journal.discard()
                return
            if journal is not None:
                journal.discard()
        await asyncio.to_thread(self._replay)

    def _spool_file(self) -> Path:
        return self.spool_dir / f"audit-{os.getpid()}.jsonl"

    def _spool(self, batch: list[AuditRecord]) -> None:
        with self._spool_file().open("ab") as fh:
            for rec in batch:
                fh.write(_dump(rec))
            fh.flush()
            os.fsync(fh.fileno())

    def _adopt_dead_journals(self) -> None:
        """Turn the journals of processes that died into spool files (replayed below)."""
        for path in sorted(self.spool_dir.glob("journal-*.jsonl")):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # adopted by another worker, or discarded by its writer
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.rename(self.spool_dir / f"audit-{path.name}")
            except OSError:
                continue  # its writer is alive (the lock is held), or someone was faster
            finally:
                os.close(fd)
            log.warning(
                "audit journal of a dead worker recovered", extra={"fields": {"file": path.name}}
            )

    def _replay(self) -> None:
        """Claim spool files (rename: one worker wins) and insert their records."""
        self._adopt_dead_journals()
        for path in sorted(self.spool_dir.glob("audit-*.jsonl")):
            claimed = path.with_suffix(f".claimed-{os.getpid()}")
            try:
                path.rename(claimed)
            except OSError:
                continue
            records = _load_all(claimed.read_text(encoding="utf-8"))
            try:
                for i in range(0, len(records), self.batch):
                    self.sink.insert_audit(records[i : i + self.batch])
            except Exception:
                claimed.rename(path)  # still down: leave it for the next attempt
                return
            claimed.unlink()
            log.info("audit spool replayed", extra={"fields": {"records": len(records)}})
        for stale in self.spool_dir.glob("audit-*.claimed-*"):
            pid = stale.suffix.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                stale.rename(self.spool_dir / f"audit-recovered-{pid}.jsonl")


def _dump(rec: AuditRecord) -> bytes:
    """One JSON line (orjson, a few microseconds: the journal writes one per call)."""
    return orjson.dumps(rec.__dict__) + b"\n"


def _load(line: str) -> AuditRecord:
    raw = json.loads(line)
    raw["ts"] = datetime.fromisoformat(raw["ts"])
    # Lines spooled before record ids existed: the request id was their key (migration 0002).
    raw.setdefault("record_id", raw["request_id"])
    return AuditRecord(**raw)


def _load_all(text: str) -> list[AuditRecord]:
    """Every whole record; a line cut short (a full disk under a dying writer) is skipped."""
    records = []
    for line in text.splitlines():
        if line:
            try:
                records.append(_load(line))
            except (ValueError, TypeError, KeyError):
                log.warning("unreadable audit spool line skipped")
    return records


_JOURNALS = itertools.count()


class _Journal:
    """One batch's records on disk while they wait in memory, locked by the living writer."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd = fd

    @classmethod
    def create(cls, spool_dir: Path) -> _Journal:
        path = spool_dir / f"journal-{os.getpid()}-{next(_JOURNALS)}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it
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
        try:
            os.write(self.fd, _dump(rec))
        except OSError as exc:  # the record is still in memory; only the kill guard is lost
            log.warning("audit journal write failed", extra={"fields": {"error": str(exc)}})

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
