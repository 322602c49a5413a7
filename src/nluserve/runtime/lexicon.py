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
# Proper-noun kinds a typed lexicon marks as well (a gazetteer: most entities a model has never
# seen in training are names, places and organisations a dictionary may know); each kind adds
# begin/middle/end columns after the N_FEATURES untyped ones.
KINDS = ("person", "place", "organization", "proper")


def _bucket(length: int) -> int:
    return min(length, 5) - 2


class Lexicon:
    """A set of words looked up over normalised text; some may carry a proper-noun kind."""

    def __init__(self, words: set[str], kinds: dict[str, int] | None = None) -> None:
        self.words = words
        # word -> index into KINDS; a lexicon with any kind is "typed" and has more columns.
        self.kinds = kinds or {}

    @property
    def n_features(self) -> int:
        """Columns of ``features``: what the model graph's ``lexicon`` input must be."""
        return N_FEATURES + (3 * len(KINDS) if self.kinds else 0)

    @classmethod
    def load(cls, path: Path) -> Lexicon:
        """Read one word per line, optionally followed by a tab and its kind."""
        words: set[str] = set()
        kinds: dict[str, int] = {}
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                word, tab, kind = line.rstrip("\n").partition("\t")
                if not word.strip():
                    continue
                words.add(word)
                if tab:
                    if kind not in KINDS:
                        raise ValueError(f"{path}:{number}: unknown word kind {kind!r}")
                    kinds[word] = KINDS.index(kind)
        return cls(words, kinds)

    def save(self, path: Path) -> None:
        """Write one word per line, sorted so the file is reproducible."""
        lines = (
            f"{w}\t{KINDS[self.kinds[w]]}" if w in self.kinds else w for w in sorted(self.words)
        )
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def features(self, text: str) -> np.ndarray:
        """A (len(text), n_features) float32 multi-hot matrix.

        Per word length, all of the text's substrings of that length are sliced in one
        comprehension and looked up with ``map`` (C loops, not a Python loop per lookup);
        only the hits, a few per text, mark the matrix. Every mark sets a 1.0, so the order of
        the marks cannot change the result.
        """
        n = len(text)
        out = np.zeros((n, self.n_features), dtype=np.float32)
        if not self.words:
            return out
        norm = "".join(normalize_char(c) or " " for c in text)
        contains = self.words.__contains__
        kinds = self.kinds
        for length in range(2, min(MAX_WORD, n) + 1):
            starts = range(n - length + 1)
            b = _bucket(length)
            for i in compress(starts, map(contains, [norm[i : i + length] for i in starts])):
                out[i, b] = 1.0
                out[i + length - 1, 8 + b] = 1.0
                if length > 2:
                    out[i + 1 : i + length - 1, 4 + b] = 1.0
                kind = kinds.get(norm[i : i + length]) if kinds else None
                if kind is not None:
                    col = N_FEATURES + 3 * kind
                    out[i, col] = 1.0
                    out[i + 1 : i + length - 1, col + 1] = 1.0
                    out[i + length - 1, col + 2] = 1.0
        return out
