"""Usage rows count calls, texts and characters of successful calls, and errors by status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from nluserve.db.migrate import upgrade
from nluserve.db.repo import Repository
from nluserve.tenancy.values import AuditRecord


def test_usage_breaks_errors_down_by_status(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    repo = Repository(url)
    statuses = [200, 200, 504, 503, 503]
    repo.insert_audit(
        AuditRecord(
            uuid.uuid4().hex,
            datetime.now(UTC),
            "t1",
            "k",
            "/v1/ner",
            "general",
            "ner",
            2,
            10,
            status,
            3.0,
        )
        for status in statuses
    )
    repo.insert_audit(
        [
            AuditRecord(
                uuid.uuid4().hex,
                datetime.now(UTC),
                "t2",
                "k",
                "/v1/ner",
                "general",
                "ner",
                1,
                5,
                429,
                1.0,
            )
        ]
    )
    [row] = repo.usage("t1", days=1)
    assert (row.calls, row.texts, row.chars, row.errors) == (5, 4, 20, 3)
    assert row.error_statuses == {"503": 2, "504": 1}
    repo.close()


def _record(tenant: str, ts: datetime) -> AuditRecord:
    return AuditRecord(
        uuid.uuid4().hex, ts, tenant, "k", "/v1/ner", "general", "ner", 1, 4, 200, 1.0
    )


def test_usage_days_are_whole_utc_days(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    repo = Repository(url)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    minute = timedelta(minutes=1)
    # The last minute of yesterday and of the day before: a rolling window of 24 or 48 hours
    # taken any time today would take in part of the older day.
    repo.insert_audit(
        [_record("t1", today - minute), _record("t1", today - timedelta(days=1) - minute)]
    )
    repo.insert_audit([_record("t1", today)])
    day = lambda d: (today - timedelta(days=d)).strftime("%Y-%m-%d")  # noqa: E731
    assert [(r.day, r.calls) for r in repo.usage("t1", days=2)] == [(day(1), 1), (day(0), 1)]
    assert [(r.day, r.calls) for r in repo.usage("t1", days=1)] == [(day(0), 1)]
    repo.close()
