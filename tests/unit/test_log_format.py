"""Both log formats carry the same facts: a record's fields and the request id."""

from __future__ import annotations

import json
import logging

from nluserve.observability.logging import formatter, request_id_var


def _record() -> logging.LogRecord:
    record = logging.LogRecord("nluserve", logging.INFO, __file__, 1, "ready", None, None)
    record.fields = {"models": ["general"], "inference_process": False}
    return record


def test_the_text_format_keeps_the_fields_and_the_request_id() -> None:
    token = request_id_var.set("abc123")
    try:
        line = formatter(as_json=False).format(_record())
    finally:
        request_id_var.reset(token)
    assert " INFO nluserve ready " in line
    assert "request_id=abc123" in line
    assert "models=['general']" in line and "inference_process=False" in line


def test_the_json_format_has_the_same_facts() -> None:
    out = json.loads(formatter(as_json=True).format(_record()))
    assert out["message"] == "ready" and out["inference_process"] is False
    assert "request_id" not in out  # none was set


def test_a_text_value_cannot_pose_as_more_fields() -> None:
    # A client-chosen value (a trusted proxy's X-Forwarded-For, say) with spaces and "="
    # read as forged fields in a key=value line.
    record = logging.LogRecord(
        "nluserve.access", logging.INFO, __file__, 1, "POST / 200", None, None
    )
    record.fields = {"client": "6.6.6.6 status=200 tenant=admin", "status": 200}
    line = formatter(as_json=False).format(record)
    assert 'client="6.6.6.6 status=200 tenant=admin" status=200' in line
    assert line.count("status=") == 2  # the quoted one and the real one


def test_the_access_log_client_is_an_address_or_unknown() -> None:
    from nluserve.api.middleware import _client

    assert _client({"client": ("10.0.0.7", 5000)}) == "10.0.0.7"
    assert _client({"client": ("::1", 5000)}) == "::1"
    assert _client({"client": ("6.6.6.6 status=200", 0)}) == "unknown"
    assert _client({}) is None
