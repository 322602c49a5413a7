"""Choosing the input encoder a model directory declares."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nluserve.models.manifest import Manifest
from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.tokenizer import Vocab


class CharEncoder:
    """Character, bigram and lexicon inputs for the models nluserve trains."""

    def __init__(self, vocab: Vocab, lexicon: Lexicon) -> None:
        self.vocab = vocab
        self.lexicon = lexicon

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Padded arrays for one batch."""
        return encode_batch(texts, self.vocab, self.lexicon)


def encoder_for(manifest: Manifest, path: Path) -> CharEncoder:
    """The encoder for a model directory, reading its vocabulary files."""
    lexicon_path = path / "lexicon.txt"
    lexicon = Lexicon.load(lexicon_path) if lexicon_path.is_file() else Lexicon(set())
    return CharEncoder(Vocab.load(path / "vocab.json"), lexicon)
