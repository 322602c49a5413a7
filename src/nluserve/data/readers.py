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
    """Read every example of a corpus file; malformed records raise with their position.

    Nothing is skipped or altered quietly: a record this reader cannot take whole is an error
    naming its place, so that a score or a model never rests on a silently smaller file."""
    try:
        fmt = detect_format(path)
        reader = {"cluener": _read_cluener, "cmeee": _read_cmeee, "csv": _read_csv}[fmt]
        return fmt, reader(path)
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path}: not UTF-8 (byte {exc.start} of a read); convert it, e.g. "
            "`iconv -f GBK -t UTF-8`"
        ) from exc


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise DataFormatError(f"{where}: text is {type(value).__name__}, not a string")
    return value


def _span(
    text: str, start: object, end_inclusive: object, label: object, where: str, said: object = None
) -> GoldSpan:
    # type() is, not isinstance: True is an int to Python; and 3.0 is not an offset.
    if type(start) is not int or type(end_inclusive) is not int:
        raise DataFormatError(
            f"{where}: span offsets must be integers, not {start!r}, {end_inclusive!r}"
        )
    if not isinstance(label, str) or not label:
        raise DataFormatError(f"{where}: entity type {label!r} is not a name")
    end = end_inclusive + 1
    if not (0 <= start < end <= len(text)):
        raise DataFormatError(f"{where}: span [{start}, {end_inclusive}] outside the text")
    if said is not None and said != text[start:end]:
        raise DataFormatError(
            f"{where}: span [{start}, {end_inclusive}] is {text[start:end]!r} in the text, but "
            f"the record says {said!r}"
        )
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
                if "entities" in obj and "label" not in obj:
                    raise DataFormatError(
                        f"{where}: a CMeEE record (`entities`) in a jsonl file; CMeEE files are "
                        "one JSON array"
                    )
                text = _text(obj["text"], where)
                spans = [
                    _span(text, s, e, label, where, said=mention)
                    for label, mentions in (obj.get("label") or {}).items()
                    for mention, positions in mentions.items()
                    for s, e in positions
                ]
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
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
            if isinstance(obj, dict) and "label" in obj and "entities" not in obj:
                raise DataFormatError(
                    f"{where}: a CLUENER record (`label`) in a JSON array; CLUENER files have "
                    "one JSON object per line"
                )
            text = _text(obj["text"], where)
            spans = [
                _span(text, e["start_idx"], e["end_idx"], e["type"], where, said=e.get("entity"))
                for e in obj.get("entities", [])
            ]
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataFormatError(f"{where}: not a CMeEE record ({exc})") from exc
        out.append(Example(text, sorted(set(spans), key=_order)))
    return out


def _read_csv(path: Path) -> list[Example]:
    out: list[Example] = []
    with path.open(encoding="utf-8-sig", newline="") as fh:
        # strict: an unterminated quote is an error, not the rest of the file as one review.
        reader = csv.reader(fh, strict=True)
        try:
            fields = [f.strip().lower() for f in next(reader, [])]
            text_col = next((f for f in ("review", "text", "sentence") if f in fields), None)
            if "label" not in fields or text_col is None:
                raise DataFormatError(f"{path}: CSV needs a 'label' and a 'review'/'text' column")
            at_label, at_text = fields.index("label"), fields.index(text_col)
            start = reader.line_num + 1
            for row in reader:
                where = f"{path}:{start}"  # the row's first line (a review may hold newlines)
                start = reader.line_num + 1
                if not row:
                    continue
                if len(row) != len(fields):
                    raise DataFormatError(
                        f"{where}: {len(row)} fields where the header has {len(fields)} (a "
                        "review with a comma must be quoted)"
                    )
                text, label = row[at_text], row[at_label].strip()
                if not label:
                    raise DataFormatError(f"{where}: missing label")
                if not text.strip():
                    raise DataFormatError(f"{where}: empty {text_col}")
                out.append(Example(text=text, label=label))
        except csv.Error as exc:
            raise DataFormatError(f"{path}:{reader.line_num}: {exc}") from exc
    return out


def _order(span: GoldSpan) -> tuple[int, int, str]:
    return (span.start, span.end, span.label)
