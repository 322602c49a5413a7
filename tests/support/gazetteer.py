"""A deterministic, context-free backend: spans that are gazetteer words score positive.

Because its output for a span depends only on that span's characters, predicting a long text
through windows must give exactly what predicting it in one piece gives.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nluserve.models.manifest import Label, Manifest
from nluserve.runtime.model import Model


class GazetteerBackend:
    def __init__(self, words: dict[str, list[str]], codes: list[str]) -> None:
        self.words = words
        self.codes = codes

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        texts = list(feeds["texts"])
        width = max(1, max(len(t) for t in texts))
        out = np.full((len(texts), len(self.codes), width, width), -5.0, dtype=np.float32)
        for row, text in enumerate(texts):
            for c, code in enumerate(self.codes):
                for word in self.words.get(code, []):
                    start = text.find(word)
                    while start >= 0:
                        # Longer words score higher so flat selection is deterministic.
                        out[row, c, start, start + len(word) - 1] = 1.0 + len(word)
                        start = text.find(word, start + 1)
        return out


def text_encoder(texts: Sequence[str]) -> dict[str, np.ndarray]:
    return {"texts": np.array(list(texts), dtype=object)}


def gazetteer_model(
    words: dict[str, list[str]], max_length: int, nested: bool = False, name: str = "gazetteer"
) -> Model:
    codes = sorted(words)
    manifest = Manifest(
        name=name,
        version="0",
        task="ner",
        max_length=max_length,
        nested=nested,
        labels=[Label(code=c, zh=c, en=c) for c in codes],
    )
    return Model(manifest, GazetteerBackend(words, codes), text_encoder)
