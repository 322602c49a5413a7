"""Usage rows count calls, texts and characters of successful calls, and errors by status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
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
