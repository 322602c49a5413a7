"""Character tokenizer: exactly one token per Python code point, so offsets are exact by construction.

Normalisation (NFKC, lower case, digits folded to ``0``) only chooses the *id* of a character;
it never changes how many tokens a text has, so ``text[start:end]`` is always the entity.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PAD, UNK, SPACE, BOS_EOS = 0, 1, 2, 3
SPECIALS = ["[PAD]", "[UNK]", "[SPACE]", "[EDGE]"]


@lru_cache(maxsize=65536)
def normalize_char(ch: str) -> str:
    """Fold a character to the form its id is looked up by ('' means whitespace-like)."""
    cat = unicodedata.category(ch)
    if ch.isspace() or cat in ("Cc", "Cf", "Zs", "Zl", "Zp"):
        return ""
    folded = unicodedata.normalize("NFKC", ch).lower()
    if not folded or folded.isspace():
        return ""
    if folded.isdigit():
        return "0"
    # NFKC can expand one character to several (㎏ -> kg); its first one carries the meaning.
    return (
        folded[0]
        if len(folded) > 1 and not unicodedata.category(folded[0]).startswith("M")
        else folded
    )


@dataclass(frozen=True)
class Vocab:
    """Maps normalised characters and character bigrams to ids."""

    chars: dict[str, int]
    bigrams: dict[str, int]

    @classmethod
    def build(
        cls, texts: Iterable[str], min_char: int = 1, min_bigram: int = 2, max_bigrams: int = 60000
    ) -> Vocab:
        """Count characters and bigrams of training texts into a vocabulary."""
        cc: Counter[str] = Counter()
        bc: Counter[str] = Counter()
        for text in texts:
            norm = [normalize_char(c) for c in text]
            cc.update(n for n in norm if n)
            bc.update(_bigrams(norm))
        chars = {s: i for i, s in enumerate(SPECIALS)}
        for ch, n in cc.most_common():
            if n >= min_char:
                chars[ch] = len(chars)
        bigrams = {"[PAD]": 0, "[UNK]": 1}
        for bg, n in bc.most_common(max_bigrams):
            if n >= min_bigram:
                bigrams[bg] = len(bigrams)
        return cls(chars=chars, bigrams=bigrams)

    def save(self, path: Path) -> None:
        """Write the vocabulary as JSON."""
        path.write_text(
            json.dumps(
                {"chars": list(self.chars), "bigrams": list(self.bigrams)}, ensure_ascii=False
            ),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, path: Path) -> Vocab:
        """Read a vocabulary written by :meth:`save`."""
        raw = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            chars={c: i for i, c in enumerate(raw["chars"])},
            bigrams={b: i for i, b in enumerate(raw["bigrams"])},
        )

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """Character ids and forward-bigram ids, one of each per code point."""
        norm = [normalize_char(c) for c in text]
        chars = [self.chars.get(n, UNK) if n else SPACE for n in norm]
        bigrams = [self.bigrams.get(b, 1) for b in _bigrams(norm)]
        return chars, bigrams


def _bigrams(norm: list[str]) -> list[str]:
    """Bigram keys c[i]c[i+1] (the last char pairs with an end marker)."""
    padded = [*(n or " " for n in norm), "$"]
    return [padded[i] + padded[i + 1] for i in range(len(norm))]
