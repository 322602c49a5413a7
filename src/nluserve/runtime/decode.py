"""Turning graph outputs into spans and class scores (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Span:
    """A labelled span of a window, ``end`` exclusive, with a probability-like score."""

    start: int
    end: int
    label: int
    score: float


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function."""
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)))


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def decode_spans(
    logits: np.ndarray, length: int, nested: bool, threshold: float = 0.0
) -> list[Span]:
    """Spans from one text's ``(labels, L, L)`` span logits: every ``(i, j)`` with logit > 0.

    Nested models keep all of them. Flat models keep a non-overlapping subset, best score first,
    because their training data never nests and a flat schema is what their users expect.
    """
    view = logits[:, :length, :length]
    labels, starts, ends = np.nonzero(np.triu(view > threshold))
    spans = [
        Span(int(s), int(e) + 1, int(c), float(sigmoid(view[c, s, e] - threshold)))
        for c, s, e in zip(labels, starts, ends, strict=True)
    ]
    return spans if nested else select_flat(spans)


def select_flat(spans: list[Span]) -> list[Span]:
    """Greedy non-overlapping selection by descending score (ties: longer, then earlier)."""
    chosen: list[Span] = []
    taken = np.zeros(max((s.end for s in spans), default=0), dtype=bool)
    for span in sorted(spans, key=lambda s: (-s.score, s.start - s.end, s.start, s.label)):
        if not taken[span.start : span.end].any():
            taken[span.start : span.end] = True
            chosen.append(span)
    return sorted(chosen, key=lambda s: (s.start, s.end, s.label))
