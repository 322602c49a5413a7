"""Turns a batch of texts into the padded arrays a model graph takes (shared by training)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.tokenizer import Vocab


def encode_batch(texts: Sequence[str], vocab: Vocab, lexicon: Lexicon) -> dict[str, np.ndarray]:
    """Pad to the longest text; ``lengths`` lets the graph mask padding exactly."""
    width = max((len(t) for t in texts), default=1) or 1
    n = len(texts)
    chars = np.zeros((n, width), dtype=np.int64)
    bigrams = np.zeros((n, width), dtype=np.int64)
    lex = np.zeros((n, width, lexicon.n_features), dtype=np.float32)
    lengths = np.zeros((n,), dtype=np.int64)
    for row, text in enumerate(texts):
        c, b = vocab.encode(text)
        chars[row, : len(c)] = c
        bigrams[row, : len(b)] = b
        lex[row, : len(text)] = lexicon.features(text)
        lengths[row] = max(len(text), 1)
    return {"chars": chars, "bigrams": bigrams, "lexicon": lex, "lengths": lengths}
