"""CLUENER jsonl, CMeEE json and sentiment CSV, detected from the file, read into one shape.

Both NER corpora store inclusive span ends; everything here is converted to Python's
exclusive ``end`` so that ``text[start:end]`` is the entity.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nluserve.errors import DataFormatError

Format = Literal["cluener", "cmeee", "csv"]


@dataclass(frozen=True)
class GoldSpan:
    """A gold entity, ``end`` exclusive."""

    start: int
    end: int
    label: str


@dataclass
class Example:
    """One labelled text: spans for NER, a class label for classification."""

    text: str
    spans: list[GoldSpan] = field(default_factory=list)
    label: str | None = None


def detect_format(path: Path) -> Format:
    """Guess the corpus format from the file's first bytes and suffix."""
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(4096).lstrip()
    if head.startswith("["):
        return "cmeee"
    if head.startswith("{"):
        return "cluener"
    first = head.splitlines()[0] if head else ""
    if "," in first and "label" in first.lower():
        return "csv"
    raise DataFormatError(
        f"{path}: unrecognised format (expected CLUENER jsonl, CMeEE json, or a CSV "
        "with a label column)"
    )


def read_examples(path: Path) -> tuple[Format, list[Example]]:
    """Read every example of a corpus file; malformed records raise with their position."""
    fmt = detect_format(path)
    reader = {"cluener": _read_cluener, "cmeee": _read_cmeee, "csv": _read_csv}[fmt]
    return fmt, reader(path)


def _span(text: str, start: int, end_inclusive: int, label: str, where: str) -> GoldSpan:
    end = end_inclusive + 1
    if not (0 <= start < end <= len(text)):
        raise DataFormatError(f"{where}: span [{start}, {end_inclusive}] outside the text")
    return GoldSpan(start, end, label)


def _read_cluener(path: Path) -> list[Example]:
    out: list[Example] = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj: dict[str, Any] = json.loads(line)
                text = obj["text"]
                spans = [
                    _span(text, s, e, label, where)
                    for label, mentions in (obj.get("label") or {}).items()
                    for positions in mentions.values()
                    for s, e in positions
                ]
            except (KeyError, TypeError, ValueError) as exc:
                raise DataFormatError(f"{where}: not a CLUENER record ({exc})") from exc
            out.append(Example(text, sorted(set(spans), key=_order)))
    return out


def _read_cmeee(path: Path) -> list[Example]:
    try:
        records = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise DataFormatError(f"{path}: invalid JSON ({exc})") from exc
    out: list[Example] = []
    for i, obj in enumerate(records):
        where = f"{path}[{i}]"
        try:
            text = obj["text"]
            spans = [
                _span(text, e["start_idx"], e["end_idx"], e["type"], where)
                for e in obj.get("entities", [])
            ]
        except (KeyError, TypeError) as exc:
            raise DataFormatError(f"{where}: not a CMeEE record ({exc})") from exc
        out.append(Example(text, sorted(set(spans), key=_order)))
    return out


def _read_csv(path: Path) -> list[Example]:
    out: list[Example] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        fields = [f.lower() for f in reader.fieldnames or []]
        text_col = next((f for f in ("review", "text", "sentence") if f in fields), None)
        if "label" not in fields or text_col is None:
            raise DataFormatError(f"{path}: CSV needs a 'label' and a 'review'/'text' column")
        for lineno, row in enumerate(reader, 2):
            row = {k.lower(): v for k, v in row.items() if k}
            text, label = row.get(text_col) or "", (row.get("label") or "").strip()
            if not label:
                raise DataFormatError(f"{path}:{lineno}: missing label")
            out.append(Example(text=text, label=label))
    return out


def _order(span: GoldSpan) -> tuple[int, int, str]:
    return (span.start, span.end, span.label)
