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

Files in the spool directory, and who may touch them:

- ``journal-<tag>-<n>.jsonl``: a living writer's journal, locked by it for its whole life. It is
  created as ``.new``, locked, and only then renamed into place, so nobody sees it unlocked.
- ``audit-<tag>-<n>.jsonl``: a spooled batch, complete and fsynced: it is written as
  ``audit-<tag>-<n>.tmp`` and renamed into place, so a replayer never reads half a batch. The
  journal that holds the same records is discarded only after that rename.
- ``deadletter-<tag>-<n>.jsonl``: lines the database refused as data (or that cannot be read);
  never replayed by the service. See docs/tenancy.md for what an operator does with them.

A replayer opens a spool file or a dead writer's journal, takes its ``flock`` without waiting
(another replayer, or the living writer, holds it: skip), checks it was not unlinked meanwhile,
inserts its records and unlinks it while still holding the lock. A replayer that dies lets go of
its lock with its life, so there is no claim to recover. ``<tag>`` is the pid and 48 random bits
drawn once per process start: a container restarted with the same pids never reuses a name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path
from typing import Protocol

from nluserve.audit.files import (
    _alive,
    _dump,
    _Journal,
    _parse,
    _storable,
    _unique,
    _write_atomically,
)
from nluserve.db.errors import refused_as_data, unreachable
from nluserve.tenancy.values import AuditRecord

log = logging.getLogger("nluserve.audit")

# Temporary files (a spool batch or dead letters before their rename, a journal before its
# lock) left by a process that died while writing one. Their records are still in the journal
# or spool file they came from, so after this long they are garbage.
_STALE_TMP_S = 3600.0


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
        # Journals whose records went back into the buffer (the database down and the disk
        # refusing the spool): discarded with the next batch that is stored or spooled.
        self._held: list[_Journal] = []
        self._journaling = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        spool_dir.mkdir(parents=True, exist_ok=True)

    def record(self, rec: AuditRecord) -> None:
        rec = _storable(rec)
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
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Not cancelled: a batch taken from the buffer must reach the database or the spool.
            self._stopping = True
            self._wake.set()
            await asyncio.wait([task])
            exc = None if task.cancelled() else task.exception()
            if exc is not None:  # logged, never raised: the final flush below must still run
                log.error("audit writer had failed", exc_info=(type(exc), exc, exc.__traceback__))
        try:
            await self.flush()
        except Exception:
            log.exception("final audit flush failed")
        self._journaling = False
        journals = [*self._held, *([self._journal] if self._journal is not None else [])]
        self._held, self._journal = [], None
        kept = bool(self._buffer)  # the flush could neither store nor spool them
        for journal in journals:
            if kept:
                journal.close()  # left on disk, unlocked: the next worker to start replays it
            else:
                journal.discard()  # everything in it was just written or spooled
        if kept:
            log.error(
                "audit records neither stored nor spooled at shutdown; left in journals",
                extra={"fields": {"records": len(self._buffer)}},
            )

    async def _loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if self._stopping:
                return
            try:
                await self.flush()
            except Exception:  # never let the writer die: records would pile up unwritten
                log.exception("audit flush failed; retrying")

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        journals: list[_Journal] = []
        if batch and self._journaling:
            # The batch's records are exactly those in the journal (and in any held ones):
            # later ones go to a new one.
            journals, self._held = self._held, []
            if self._journal is not None:
                journals.append(self._journal)
            self._journal = _Journal.replace(self.spool_dir)
        if batch:
            try:
                await asyncio.to_thread(self.sink.insert_audit, batch)
            except Exception as exc:  # the database is down: keep every record on disk
                log.warning(
                    "audit batch refused by the database, spooling (a replay sets the refused "
                    "records aside)"
                    if refused_as_data(exc)
                    else "audit database unavailable, spooling",
                    extra={"fields": {"records": len(batch), "error": type(exc).__name__}},
                )
                try:
                    await asyncio.to_thread(self._spool, batch)
                except Exception:
                    # The disk refuses too: keep the records in memory and their journals on
                    # disk, and try again with the next batch.
                    log.exception(
                        "audit spool write failed; records kept in memory",
                        extra={"fields": {"records": len(batch)}},
                    )
                    self._buffer[:0] = batch
                    self._held[:0] = journals
                    return
                for journal in journals:
                    journal.discard()  # only now: the spool file is complete and in place
                return
            for journal in journals:
                journal.discard()
        await asyncio.to_thread(self._replay)

    def _spool(self, batch: list[AuditRecord]) -> None:
        """Write the batch to a temporary file, fsync it, and rename it into place."""
        _write_atomically(self.spool_dir, "audit", b"".join(_dump(rec) for rec in batch))

    def _replay(self) -> None:
        """Insert the records of spool files and of dead writers' journals, each file alone."""
        self._remove_stale_temporaries()
        self._adopt_legacy_claims()
        paths = sorted(self.spool_dir.glob("audit-*.jsonl"))
        paths += sorted(self.spool_dir.glob("journal-*.jsonl"))
        for path in paths:
            try:
                reachable = self._replay_file(path)
            except Exception:  # one file must never stop the others, nor the writer
                log.exception(
                    "audit spool file not replayed", extra={"fields": {"file": path.name}}
                )
                continue
            if not reachable:
                return  # the database is still down: leave the rest for the next attempt

    def _replay_file(self, path: Path) -> bool:
        """Replay one file if nobody else holds it; False when the database is unreachable."""
        try:
            fh = path.open("rb")
        except FileNotFoundError:
            return True  # replayed by another worker, or discarded by its writer
        with fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True  # its writer lives (a journal), or another worker is replaying it
            if os.fstat(fh.fileno()).st_nlink == 0:
                return True  # replayed and removed by another worker since we opened it
            lines, unreadable = _parse(fh.read())
            try:
                refused = self._insert_isolating([rec for _, rec in lines])
            except Exception as exc:
                if unreachable(exc):
                    return False
                # Neither the database away nor a refused record: keep the file and move on.
                log.warning(
                    "audit spool file not replayed; kept for the next attempt",
                    extra={"fields": {"file": path.name, "error": type(exc).__name__}},
                )
                return True
            dead = unreadable + [lines[i][0] for i in sorted(refused)]
            if dead:
                deadletter = _write_atomically(self.spool_dir, "deadletter", b"".join(dead))
                errors = sorted({type(e).__name__ for e in refused.values()})
                log.error(
                    "AUDIT RECORDS NOT STORED: moved to a dead-letter file for an operator",
                    extra={
                        "fields": {
                            "file": path.name,
                            "deadletter": deadletter.name,
                            "refused": len(refused),
                            "unreadable": len(unreadable),
                            "errors": errors,
                            # ids only: the records may hold a client's text
                            "record_ids": [lines[i][1].record_id for i in sorted(refused)][:20],
                        }
                    },
                )
            path.unlink(missing_ok=True)
        stored = len(lines) - len(refused)
        if path.name.startswith("journal-"):
            log.warning(
                "audit journal of a dead worker recovered",
                extra={"fields": {"file": path.name, "records": stored}},
            )
        elif lines:
            log.info("audit spool replayed", extra={"fields": {"records": stored}})
        return True

    def _insert_isolating(self, records: list[AuditRecord]) -> dict[int, Exception]:
        """Insert in chunks; the records the database refuses as data, by index, with why.

        A chunk refused as data is halved until the refused records stand alone, so every
        other record is stored. Any other error (the database away) is raised.
        """
        refused: dict[int, Exception] = {}

        def insert(lo: int, hi: int) -> None:
            try:
                self.sink.insert_audit(records[lo:hi])
            except Exception as exc:
                if not refused_as_data(exc):
                    raise
                if hi - lo == 1:
                    refused[lo] = exc
                    return
                mid = (lo + hi) // 2
                insert(lo, mid)
                insert(mid, hi)

        for lo in range(0, len(records), self.batch):
            insert(lo, min(lo + self.batch, len(records)))
        return refused

    def _remove_stale_temporaries(self) -> None:
        cutoff = time.time() - _STALE_TMP_S
        for pattern in ("*.tmp", "journal-*.new"):
            for path in self.spool_dir.glob(pattern):
                with contextlib.suppress(OSError):
                    if path.stat().st_mtime < cutoff:
                        path.unlink()

    def _adopt_legacy_claims(self) -> None:
        """``audit-*.claimed-<pid>`` files of an earlier version whose claimer died."""
        for stale in self.spool_dir.glob("audit-*.claimed-*"):
            pid = stale.suffix.rsplit("-", 1)[-1]
            if pid.isdigit() and not _alive(int(pid)):
                with contextlib.suppress(OSError):  # another worker was faster
                    stale.rename(self.spool_dir / f"audit-{_unique('legacy')}.jsonl")
