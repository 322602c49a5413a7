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
