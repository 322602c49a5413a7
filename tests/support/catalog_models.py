"""Deterministic models whose labels carry the catalog's names and aliases (人物, 地理位置, ...).

The compatibility routes resolve schema keys through those aliases, so their tests need models
labelled as the real ones are, without loading any weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nluserve.models.manifest import Manifest
from nluserve.runtime.model import Model
from nluserve.train.catalog import label_for
from tests.support.gazetteer import GazetteerBackend, text_encoder

POSITIVE_MARKS = ("好", "干净", "周到", "棒")


def catalog_gazetteer(
    words: dict[str, list[str]], name: str, max_length: int = 64, nested: bool = False
) -> Model:
    """A gazetteer NER model (see tests/support/gazetteer.py) labelled from the catalog."""
    codes = sorted(words)
    manifest = Manifest(
        name=name,
        version="1.0.0",
        task="ner",
        max_length=max_length,
        nested=nested,
        labels=[label_for(c) for c in codes],
    )
    return Model(manifest, GazetteerBackend(words, codes), text_encoder)


class MarkBackend:
    """Sentiment logits ``(B, 2)``: positive when the text holds a positive mark, else negative."""

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        texts: Sequence[str] = [str(t) for t in feeds["texts"]]
        rows = [[0.0, 2.0] if any(m in t for m in POSITIVE_MARKS) else [2.0, 0.0] for t in texts]
        return np.array(rows, dtype=np.float32)


def sentiment_fake(name: str = "sentiment", max_length: int = 64) -> Model:
    """A classification model (negative, positive) that answers by :data:`POSITIVE_MARKS`."""
    manifest = Manifest(
        name=name,
        version="1.0.0",
        task="classification",
        max_length=max_length,
        labels=[label_for("negative"), label_for("positive")],
    )
    return Model(manifest, MarkBackend(), text_encoder)
