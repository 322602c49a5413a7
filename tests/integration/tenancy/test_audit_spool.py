"""The audit spool never drops a record silently: races, refused rows, bad bytes, dead writers.

Most of this runs the recorder against a real SQLite database (cheap); what only PostgreSQL
refuses (U+0000 in text, an integer out of range) runs against a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from nluserve.audit import recorder
from nluserve.db.migrate import upgrade
from nluserve.db.repo import Repository
from nluserve.db.tables import AuditRow
from nluserve.errors import InferenceUnavailableError
from nluserve.services.inference import InferenceService
from nluserve.tenancy.values import AuditRecord
from tests.integration.tenancy.harness import (
    TEXT,
    assert_problem,
    bearer,
    build_stack,
    running,
    tenancy_settings,
)
from tests.support.audit_rows import audit_row

SECRET = "病历号甲乙丙丁"


def _record(rid: str, text: str | None = None, **fields: object) -> AuditRecord:
    ts = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    return AuditRecord(**audit_row(rid, ts=ts, key_id="k1", latency_ms=1.5, text=text, **fields))


def _line(rec: AuditRecord, **raw: object) -> bytes:
    """One spool line as a recorder writes it, with fields overridden as written (any JSON)."""
    values = {**rec.__dict__, "ts": rec.ts.isoformat(), **raw}
    return json.dumps(values, ensure_ascii=False).encode() + b"\n"


def _stored(repo: Repository) -> dict[str, str | None]:
    with repo.engine.connect() as conn:
        rows = conn.execute(select(AuditRow.record_id, AuditRow.text)).all()
    return {r.record_id: r.text for r in rows}


def _down() -> OperationalError:
    return OperationalError("INSERT INTO audit", {}, ConnectionRefusedError("database down"))


class DownSink:
    """A database that cannot be reached."""

    def insert_audit(self, records: list[AuditRecord]) -> int:
        raise _down()


def _make_repo(url: str) -> Iterator[Repository]:
    upgrade(url)
    repo = Repository(url)
    try:
        yield repo
    finally:
        repo.close()


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[Repository]:
    yield from _make_repo(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.fixture
def pg_repo(postgres_url: str) -> Iterator[Repository]:
    yield from _make_repo(postgres_url)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


def _left(spool: Path) -> list[str]:
    """Files still waiting for a replay (spool files and journals)."""
    return sorted(p.name for p in spool.iterdir() if not p.name.startswith("deadletter-"))


def _deadletters(spool: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(spool.glob("deadletter-*.jsonl")))


# 1: a spool file is only ever seen complete ------------------------------------------------------


def test_a_replay_in_another_worker_never_takes_a_spool_file_being_written(
    repo: Repository, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker A spools a batch (its database connection broken) while worker B, whose database
    works, replays the spool directory half-way through A's write."""
    n = 40
    writer = recorder.AuditRecorder(DownSink(), spool)
    replayer = recorder.AuditRecorder(repo, spool)
    dumped = 0
    real_dump = recorder._dump

    def dump_and_race(rec: AuditRecord) -> bytes:
        nonlocal dumped
        dumped += 1
        if dumped == n + n // 2:  # n journal lines, then half of the spooled batch
            replayer._replay()
        dumped_line: bytes = real_dump(rec)
        return dumped_line

    monkeypatch.setattr(recorder, "_dump", dump_and_race)

    async def scenario() -> None:
        writer.start()
        for i in range(n):
            writer.record(_record(f"r{i}"))
        await writer.flush()  # the insert fails: the batch is spooled, B replays meanwhile
        assert writer._task is not None and writer._journal is not None
        writer._task.cancel()  # A dies here: the kernel lets go of its journal's lock
        os.close(writer._journal.fd)

    asyncio.run(scenario())
    replayer._replay()  # once more, after A's write has finished
    assert sorted(_stored(repo)) == sorted(f"r{i}" for i in range(n))
    assert _left(spool) == []


# 2: one record the database refuses does not block the spool -------------------------------------


def test_a_refused_record_goes_to_a_dead_letter_file_and_the_rest_are_stored(
    repo: Repository, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = [_record(f"g{i}") for i in range(5)]
    refused = _record("bad", text=SECRET)
    # A NULL route breaks the NOT NULL constraint: an IntegrityError, for that row alone.
    bad_line = _line(refused, route=None)
    (spool / "audit-1-a.jsonl").write_bytes(
        _line(good[0]) + _line(good[1]) + bad_line + _line(good[2])
    )
    (spool / "audit-2-b.jsonl").write_bytes(_line(good[3]) + _line(good[4]))
    rec = recorder.AuditRecorder(repo, spool, batch=3)

    with caplog.at_level(logging.INFO, logger="nluserve.audit"):
        rec._replay()

    assert sorted(_stored(repo)) == sorted(r.record_id for r in good)
    assert _left(spool) == []
    assert _deadletters(spool) == bad_line  # byte for byte, for an operator
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert loud and "dead-letter" in loud[0].getMessage()
    assert loud[0].fields["record_ids"] == ["bad"]  # type: ignore[attr-defined]
    assert SECRET not in caplog.text
    assert all(SECRET not in str(getattr(r, "fields", "")) for r in caplog.records)

    rec._replay()  # the dead-letter file is never replayed by the service
    assert _deadletters(spool) == bad_line
    assert len(_stored(repo)) == 5


def test_a_database_that_is_down_keeps_every_spool_file_for_later(
    repo: Repository, spool: Path
) -> None:
    lines = [_line(_record(f"r{i}")) for i in range(3)]
    (spool / "audit-1-a.jsonl").write_bytes(lines[0] + lines[1])
    (spool / "audit-2-b.jsonl").write_bytes(lines[2])
    recorder.AuditRecorder(DownSink(), spool)._replay()
    assert _left(spool) == ["audit-1-a.jsonl", "audit-2-b.jsonl"]
    assert _deadletters(spool) == b""
    recorder.AuditRecorder(repo, spool)._replay()
    assert sorted(_stored(repo)) == ["r0", "r1", "r2"]
    assert _left(spool) == []


def test_postgres_stores_a_text_with_nul_instead_of_blocking_the_spool(
    postgres_url: str, tmp_path: Path
) -> None:
    settings = tenancy_settings(
        tmp_path / "data", database_url=postgres_url, audit_text=True, key_pepper="nul-test-pepper"
    )
    stack = build_stack(settings)
    tenant, key = stack.tenant("acme")

    async def scenario() -> None:
        async with running(stack.app) as client:
            for text in ("张三\u0000在北京", TEXT):
                r = await client.post("/v1/ner", json={"text": text}, headers=bearer(key))
                assert r.status_code == 200, r.text
            await stack.app.state.gate.audit.flush()
            r = await client.post("/v1/ner", json={"text": "李四在上海"}, headers=bearer(key))
            assert r.status_code == 200, r.text
        # Leaving the lifespan flushes the last batch and replays what was spooled.

    asyncio.run(scenario())
    stored = sorted(t or "" for t in stack.audit_texts(tenant.id))
    stack.tenancy.repo.close()
    assert stored == sorted(["张三\ufffd在北京", TEXT, "李四在上海"])
    spool = settings.data_dir / "spool"
    assert list(spool.glob("audit-*")) == []
    assert list(spool.glob("deadletter-*")) == []


def test_postgres_replay_stores_old_nul_lines_and_sets_aside_what_it_refuses(
    pg_repo: Repository, spool: Path
) -> None:
    # Lines spooled before records were made storable (a NUL in the text), a record PostgreSQL
    # refuses whatever is done to it (an integer out of range), and a file after both.
    nul = _record("nul", text="a\u0000b")
    out_of_range = _line(_record("huge"), status=2**40)
    (spool / "audit-1-a.jsonl").write_bytes(
        _line(_record("g0")) + _line(nul) + out_of_range + _line(_record("g1"))
    )
    (spool / "audit-2-b.jsonl").write_bytes(_line(_record("g2")))
    recorder.AuditRecorder(pg_repo, spool)._replay()
    assert _stored(pg_repo) == {"g0": None, "g1": None, "g2": None, "nul": "a\ufffdb"}
    assert _left(spool) == []
    assert _deadletters(spool) == out_of_range


# 3: the writer survives; each file is replayed on its own; stop() always flushes -------------------


def test_the_writer_loop_survives_an_exception_and_keeps_writing(
    repo: Repository, spool: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = recorder.AuditRecorder(repo, spool, interval_s=0.02)
    real_replay = rec._replay
    failures = 0

    def replay_failing_once() -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            raise RuntimeError("an unexpected bug")
        real_replay()

    rec._replay = replay_failing_once  # type: ignore[method-assign,unused-ignore]

    async def scenario() -> None:
        rec.start()
        rec.record(_record("before"))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if failures:
                break
        await asyncio.sleep(0.1)
        rec.record(_record("after"))
        for _ in range(100):
            await asyncio.sleep(0.02)
            if len(_stored(repo)) == 2:
                break
        assert sorted(_stored(repo)) == ["after", "before"]  # written by the loop, not stop()
        await rec.stop()

    with caplog.at_level(logging.ERROR, logger="nluserve.audit"):
        asyncio.run(scenario())
    assert failures == 1
    assert any(r.exc_info and "an unexpected bug" in str(r.exc_info[1]) for r in caplog.records)
    assert _left(spool) == []


def test_stop_flushes_even_when_the_writer_task_had_failed(repo: Repository, spool: Path) -> None:
    rec = recorder.AuditRecorder(repo, spool)

    async def failed() -> None:
        raise RuntimeError("the writer died")

    async def scenario() -> None:
        rec.start()
        assert rec._task is not None
        rec._task.cancel()
        rec._task = asyncio.get_running_loop().create_task(failed())
        await asyncio.sleep(0)
        rec.record(_record("last"))
        await rec.stop()

    asyncio.run(scenario())
    assert sorted(_stored(repo)) == ["last"]
    assert _left(spool) == []


def test_undecodable_bytes_are_set_aside_and_the_other_files_replayed(
    repo: Repository, spool: Path
) -> None:
    # A journal line cut in the middle of a character by a full disk under a dying writer.
    whole = _line(_record("cut", text="张三在北京"))
    cut = whole[: whole.index("北".encode()) + 1] + b"\n"
    with pytest.raises(UnicodeDecodeError):
        cut.decode()
    (spool / "audit-1-a.jsonl").write_bytes(_line(_record("a0")) + cut + _line(_record("a1")))
    (spool / "audit-2-b.jsonl").write_bytes(_line(_record("b0")))
    recorder.AuditRecorder(repo, spool)._replay()
    assert sorted(_stored(repo)) == ["a0", "a1", "b0"]
    assert _left(spool) == []
    assert _deadletters(spool) == cut


def test_a_full_disk_during_an_outage_keeps_the_batch_in_memory(
    repo: Repository, spool: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = recorder.AuditRecorder(DownSink(), spool)

    def disk_full(*args: object) -> Path:
        raise OSError(28, "No space left on device")

    async def scenario() -> None:
        rec.start()
        rec.record(_record("r0"))
        with monkeypatch.context() as m:
            m.setattr(rec, "_spool", lambda batch: disk_full())
            await rec.flush()  # neither the database nor the disk: nothing raised, nothing lost
        rec.record(_record("r1"))
        rec.sink = repo  # the database is back
        await rec.stop()

    asyncio.run(scenario())
    assert sorted(_stored(repo)) == ["r0", "r1"]
    assert _left(spool) == []


def test_a_legacy_claimed_file_of_a_dead_worker_is_replayed(repo: Repository, spool: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    pid = int(dead.stdout)
    (spool / f"audit-{pid}.claimed-{pid}").write_bytes(_line(_record("legacy")))
    recorder.AuditRecorder(repo, spool)._replay()
    assert sorted(_stored(repo)) == ["legacy"]
    assert _left(spool) == []


# 18: a process that reuses a dead one's pid never reuses its files -------------------------------


def test_a_restart_with_the_same_pid_keeps_the_dead_runs_journal(
    repo: Repository, spool: Path
) -> None:
    # A fresh import is a fresh process start with the same pid (as in a restarted container).
    first = importlib.reload(recorder)

    async def killed_run() -> None:
        rec = first.AuditRecorder(DownSink(), spool)
        rec.start()
        rec.record(_record("dead-run"))
        assert rec._journal is not None
        os.close(rec._journal.fd)  # SIGKILL: the kernel lets go of the lock, the file stays

    asyncio.run(killed_run())
    second = importlib.reload(recorder)

    async def next_run() -> None:
        rec = second.AuditRecorder(repo, spool)
        rec.start()
        rec.record(_record("next-run"))
        await rec.stop()

    asyncio.run(next_run())
    assert sorted(_stored(repo)) == ["dead-run", "next-run"]
    assert _left(spool) == []


# 11: quota units go back whatever stops the call ---------------------------------------------------


def test_units_taken_are_given_back_when_a_later_admission_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    tenant, key = stack.tenant("acme")
    body = {"text": "张三患肺炎", "schema": {"name": None, "dis": None}}  # two models, two units

    async def scenario() -> None:
        async with running(stack.app, raise_errors=False) as client:
            quota = stack.app.state.gate.quota
            real_acquire = quota.acquire
            calls = 0

            async def acquire_then_fail(*args: object) -> object:
                nonlocal calls
                calls += 1
                if calls == 2:
                    raise sqlite3.OperationalError("database is locked")
                return await real_acquire(*args)

            monkeypatch.setattr(quota, "acquire", acquire_then_fail)
            r = await client.post("/api/predict", json=body, headers=bearer(key))
            assert r.status_code >= 500
            assert calls == 2
            assert await stack.quota_used(tenant) == 0  # the first model's unit came back

    asyncio.run(scenario())
    stack.tenancy.repo.close()


def test_a_give_back_that_fails_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = build_stack(tenancy_settings(tmp_path / "data"))
    tenant, key = stack.tenant("acme")
    body = {"text": "张三患肺炎", "schema": {"name": None, "dis": None}}

    async def unavailable(*args: object, **kwargs: object) -> object:
        raise InferenceUnavailableError("inference process gone")

    monkeypatch.setattr(InferenceService, "predict", unavailable)

    async def scenario() -> None:
        async with running(stack.app, raise_errors=False) as client:
            quota = stack.app.state.gate.quota
            real_release = quota.release
            releases = 0

            async def release_failing_first(*args: object) -> None:
                nonlocal releases
                releases += 1
                if releases == 1:
                    raise sqlite3.OperationalError("database is locked")
                await real_release(*args)

            monkeypatch.setattr(quota, "release", release_failing_first)
            r = await client.post("/api/predict", json=body, headers=bearer(key))
            assert_problem(r, 503, "inference-unavailable")  # not a 500 from the give-back
            assert releases == 2
            assert await stack.quota_used(tenant) == 1  # only the unit that failed is kept

    asyncio.run(scenario())
    stack.tenancy.repo.close()
