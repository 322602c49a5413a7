"""One audit row's columns, as a call of tenant t1 on `general` leaves them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def audit_row(record_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "request_id": record_id,
        "ts": datetime(2026, 11, 1, tzinfo=UTC),
        "tenant_id": "t1",
        "key_id": None,
        "route": "/v1/ner",
        "model": "general",
        "task": "ner",
        "n_texts": 1,
        "chars": 5,
        "status": 200,
        "latency_ms": 3.5,
        "text": None,
        **changes,
    }
