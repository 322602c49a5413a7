"""Structured JSON logs on stdout; every line of a request carries its request id.

A 30-line formatter instead of a logging library: stdlib logging already does the routing,
we only need one JSON object per line. Every request writes an access line, so the formatter
is on the hot path: orjson, and the timestamp's seconds part is formatted once per second.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from contextvars import ContextVar

import orjson

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class JsonFormatter(logging.Formatter):
    """One JSON object per record with ts, level, logger, message, request_id and extras."""

    def __init__(self) -> None:
        super().__init__()
        self._cached = (-1, "")  # (second, its formatted stamp): one tuple, swapped atomically

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        cached, stamp = self._cached
        if second != cached:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, stamp)
        return f"{stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """``NLUSERVE_LOG_JSON=false``: one readable line, still with the request id and the
    record's fields (``key=value``), which say as much as the JSON line does."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = dict(getattr(record, "fields", {}))
        rid = request_id_var.get()
        if rid:
            fields = {"request_id": rid, **fields}
        if fields:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items())
        return line


def _plain(value: object) -> str:
    """A value as is when it is one plain word, else quoted: a value with spaces or "=" (a
    header a client chose) must not read as more fields."""
    text = str(value)
    if text and all(c.isprintable() and not c.isspace() and c not in '"=' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def formatter(as_json: bool) -> logging.Formatter:
    return JsonFormatter() if as_json else TextFormatter()


def configure(level: str = "info", as_json: bool = True) -> None:
    """Route nluserve, uvicorn and gunicorn logs through one handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "gunicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    # Our access log replaces uvicorn's, which would log query strings and no request id.
    logging.getLogger("uvicorn.access").disabled = True
