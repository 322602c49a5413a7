"""Turning one window's NER graph output into character spans, per encoder family (numpy only).

Our char models emit span logits ``(labels, L, L)`` over characters; imported WordPiece models emit
per-token tag logits ``(T, tags)`` that need the encoder's token offsets to land on characters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from nluserve.errors import ModelIntegrityError
from nluserve.models.manifest import Manifest
from nluserve.runtime.decode import Span, decode_spans, softmax

# Encoder output holding each token's [start, end) character offsets; -1 marks [CLS]/[SEP]/padding.
# The backend feeds the graph only the inputs it declares, so this array never reaches it.
OFFSETS = "offsets"

Role = Literal["outside", "begin", "inside", "end", "single"]
_ROLES: dict[str, Role] = {
    "B": "begin",
    "I": "inside",
    "M": "inside",
    "E": "end",
    "L": "end",
    "S": "single",
    "U": "single",
}


class SpanDecoder(Protocol):
    """Spans (window-relative character offsets) from one window's graph output."""

    def __call__(
        self, output: np.ndarray, inputs: Mapping[str, np.ndarray], length: int
    ) -> list[Span]:
        """``output`` and ``inputs`` are this window's rows; ``length`` its character count."""
        ...


@dataclass(frozen=True)
class Tag:
    """One tag of a BIO/BIOES/BILOU/BMES or IO scheme: its role and entity type."""

    role: Role
    type: str | None


def parse_tag(tag: str) -> Tag:
    """``B-PER`` -> begin PER, ``O`` -> outside; a tag without a prefix is an IO-scheme type."""
    if tag.upper() == "O":
        return Tag("outside", None)
    role = _ROLES.get(tag[:1].upper())
    if role is not None and len(tag) > 2 and tag[1] in "-_":
        return Tag(role, tag[2:])
    return Tag("inside", tag)


def entity_types(tags: Sequence[str]) -> list[str]:
    """The entity types of a tag set, in order of first appearance."""
    seen: dict[str, None] = {}
    for tag in tags:
        kind = parse_tag(tag).type
        if kind is not None:
            seen.setdefault(kind, None)
    return list(seen)


class SpanMatrixDecoder:
    """nluserve's own char models: span logits ``(labels, L, L)`` over characters."""

    def __init__(self, threshold: float = 0.0) -> None:
        self.threshold = threshold

    def __call__(
        self, output: np.ndarray, inputs: Mapping[str, np.ndarray], length: int
    ) -> list[Span]:
        """Every span with a logit above the model's calibrated threshold.

        All candidates, even for flat models: flat selection runs once, after the windows are
        merged, so a span cut by a window edge can never suppress a whole one.
        """
        return decode_spans(output, length, nested=True, threshold=self.threshold)


class TagDecoder:
    """Imported token-classification models: argmax tag per token, then tag runs to spans.

    Lenient like seqeval: an ``I-``/``E-`` tag that does not continue an entity of its type
    starts one. An entity runs from its first token's start to its last token's end; its score is
    the mean probability of the chosen tags.
    """

    def __init__(self, tags: Sequence[str], label_codes: Sequence[str]) -> None:
        index = {code: i for i, code in enumerate(label_codes)}
        self.tags = [parse_tag(t) for t in tags]
        unknown = {t.type for t in self.tags if t.type is not None and t.type not in index}
        if unknown:
            raise ModelIntegrityError(f"tags of unknown entity types: {sorted(unknown)}")
        self._label = [index[t.type] if t.type is not None else -1 for t in self.tags]

    def __call__(
        self, output: np.ndarray, inputs: Mapping[str, np.ndarray], length: int
    ) -> list[Span]:
        """Spans of one window from ``(T, tags)`` logits and the encoder's token offsets."""
        offsets = inputs[OFFSETS]
        real = offsets[:, 0] >= 0
        probs = softmax(output[: len(offsets)][real].astype(np.float64))
        best = probs.argmax(axis=-1)
        scores = probs[np.arange(len(best)), best]
        return self.decode([int(b) for b in best], scores.tolist(), offsets[real].tolist())

    def decode(
        self, tag_ids: list[int], scores: list[float], offsets: list[list[int]]
    ) -> list[Span]:
        """Spans from per-token tag ids, their probabilities and ``[start, end)`` offsets."""
        spans: list[Span] = []
        first = -1  # first token of the open entity, -1 when none is open
        open_label = -1

        def close(last: int) -> None:
            nonlocal first
            if first >= 0:
                mean = sum(scores[first : last + 1]) / (last + 1 - first)
                spans.append(Span(offsets[first][0], offsets[last][1], open_label, mean))
            first = -1

        for k, tag_id in enumerate(tag_ids):
            tag, label = self.tags[tag_id], self._label[tag_id]
            if tag.role == "outside":
                close(k - 1)
                continue
            continues = first >= 0 and label == open_label and tag.role in ("inside", "end")
            if not continues:
                close(k - 1)
                first, open_label = k, label
            if tag.role in ("end", "single"):
                close(k)
        close(len(tag_ids) - 1)
        return spans


def decoder_for(manifest: Manifest) -> SpanDecoder:
    """The span decoder of an NER model directory, chosen by its encoder."""
    if manifest.encoder == "char":
        return SpanMatrixDecoder(manifest.threshold)
    tags = (manifest.model_extra or {}).get("tags")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ModelIntegrityError(f"{manifest.name}: a wordpiece NER manifest needs a 'tags' list")
    return TagDecoder(tags, [lab.code for lab in manifest.labels])
