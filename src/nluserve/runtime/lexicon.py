"""Word-lexicon features: which dictionary words begin, continue or end at each character.

Published Chinese NER work (Lattice LSTM, SoftLexicon) gains several F1 points from word
boundaries; we use a cheap multi-hot form of it so that it exports to ONNX as a plain input.
"""

from __future__ import annotations

from itertools import compress
from pathlib import Path

import numpy as np

from nluserve.runtime.tokenizer import normalize_char

MAX_WORD = 6
# Position (begin, middle, end) x word length bucket (2, 3, 4, 5+).
N_FEATURES = 12


def _bucket(length: int) -> int:
    return min(length, 5) - 2


class Lexicon:
    """A set of words looked up over normalised text."""

    def __init__(self, words: set[str]) -> None:
        self.words = words

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """Read one word per line."""
        with path.open(encoding="utf-8") as fh:
            return cls({line.rstrip("\n") for line in fh if line.strip()})

    def save(self, path: Path) -> None:
        """Write one word per line, sorted so the file is reproducible."""
        path.write_text("\n".join(sorted(self.words)) + "\n", encoding="utf-8")

    def features(self, text: str) -> np.ndarray:
        """A (len(text), N_FEATURES) float32 multi-hot matrix.

        Per word length, all of the text's substrings of that length are sliced in one
        comprehension and looked up with ``map`` (C loops, not a Python loop per lookup);
        only the hits, a few per text, mark the matrix. Every mark sets a 1.0, so the order of
        the marks cannot change the result.
        """
        n = len(text)
        out = np.zeros((n, N_FEATURES), dtype=np.float32)
        if not self.words:
            return out
        norm = "".join(normalize_char(c) or " " for c in text)
        contains = self.words.__contains__
        for length in range(2, min(MAX_WORD, n) + 1):
            starts = range(n - length + 1)
            b = _bucket(length)
            for i in compress(starts, map(contains, [norm[i : i + length] for i in starts])):
                out[i, b] = 1.0
                out[i + length - 1, 8 + b] = 1.0
                if length > 2:
                    out[i + 1 : i + length - 1, 4 + b] = 1.0
        return out
