"""Character n-gram presence features for a classifier's linear part.

On a few thousand reviews a network trained from scratch overfits long before it extracts the
lexical signal an n-gram linear model gets. A classification model may therefore carry a linear
part over which character 1–3-grams a text contains (fitted at training time, see
``train/linear.py``); its weights live in the graph, and this module turns texts into the ids
the graph gathers them by. Training and serving share it, so the features are the same.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from nluserve.runtime.tokenizer import normalize_char

N_MAX = 3
FILE = "ngrams.json"
_SPACES = re.compile(" +")


def ngram_keys(text: str, n_max: int = N_MAX) -> set[str]:
    """The distinct 1..n_max-grams of the normalised text (whitespace runs become one space)."""
    s = _SPACES.sub(" ", "".join(normalize_char(c) or " " for c in text))
    return {s[i : i + n] for n in range(1, n_max + 1) for i in range(len(s) - n + 1)}


class NgramIndex:
    """Id 0 pads; ids 1.. are the n-grams kept at training time, in file order."""

    def __init__(self, keys: Sequence[str]) -> None:
        self.ids = {k: i for i, k in enumerate(keys, start=1)}

    def __len__(self) -> int:
        return len(self.ids) + 1

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 2) -> NgramIndex:
        """Keep the n-grams found in at least ``min_count`` texts, in first-seen order."""
        counts: dict[str, int] = {}
        for text in texts:
            # sorted: a set's order follows the process's string hash seed, and the ids must not
            for key in sorted(ngram_keys(text)):
                counts[key] = counts.get(key, 0) + 1
        return cls([k for k, n in counts.items() if n >= min_count])

    def save(self, path: Path) -> None:
        """Write the kept n-grams as a JSON list (keys may hold spaces, never newlines)."""
        path.write_text(json.dumps(list(self.ids), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> NgramIndex:
        """Read a list written by :meth:`save`."""
        return cls(json.loads(path.read_text(encoding="utf-8")))

    def encode(self, text: str) -> list[int]:
        """Sorted ids of the known n-grams the text contains."""
        ids = self.ids
        return sorted(i for k in ngram_keys(text) if (i := ids.get(k)) is not None)

    def encode_batch(self, texts: Sequence[str]) -> np.ndarray:
        """(batch, most ids in a text) int64, padded with 0."""
        rows = [self.encode(t) for t in texts]
        out = np.zeros((len(rows), max((len(r) for r in rows), default=0) or 1), dtype=np.int64)
        for row, ids in enumerate(rows):
            out[row, : len(ids)] = ids
        return out
