"""Batched audit writes with a local spool for database outages.

Calls append to an in-memory buffer (no I/O on the request path). A background task writes
batches; if the database is unreachable the batch goes to a JSON-lines spool file in the data
directory and is replayed when the database is back. Inserts ignore request ids already
stored, so a replay after a partial failure never duplicates a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Protocol

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
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        spool_dir.mkdir(parents=True, exist_ok=True)

    def record(self, rec: AuditRecord) -> None:
        self._buffer.append(rec)
        if len(self._buffer) >= self.batch:
            self._wake.set()

    def record_call(self, **fields: object) -> None:
        self.record(AuditRecord(**fields))  # type: ignore[arg-type]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._buffer = self._buffer, []
        if batch:
            try:
                await asyncio.to_thread(self.sink.insert_audit, batch)
            except Exception as exc:  # the database is down: keep every record on disk
                log.warning(
                    "audit database unavailable, spooling",
                    extra={"fields": {"records": len(batch), "error": type(exc).__name__}},
                )
                await asyncio.to_thread(self._spool, batch)
                return
        await asyncio.to_thread(self._replay)

    def _spool_file(self) -> Path:
        return self.spool_dir / f"audit-{os.getpid()}.jsonl"

    def _spool(self, batch: list[AuditRecord]) -> None:
        with self._spool_file().open("a", encoding="utf-8") as fh:
            for rec in batch:
                fh.write(json.dumps(asdict(rec), default=str, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _replay(self) -> None:
        """Claim spool files (rename: one worker wins) and insert their records."""
        for path in sorted(self.spool_dir.glob("audit-*.jsonl")):
            claimed = path.with_suffix(f".claimed-{os.getpid()}")
            try:
                path.rename(claimed)
            except OSError:
                continue
            records = [
                _load(line) for line in claimed.read_text(encoding="utf-8").splitlines() if line
            ]
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


def _load(line: str) -> AuditRecord:
    raw = json.loads(line)
    raw["ts"] = datetime.fromisoformat(raw["ts"])
    return AuditRecord(**raw)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
