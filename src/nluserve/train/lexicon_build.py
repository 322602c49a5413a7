"""Building the word lexicon from the dictionary that ships inside the jieba wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nluserve.runtime.lexicon import KINDS, MAX_WORD, Lexicon
from nluserve.runtime.tokenizer import normalize_char

# jieba's part-of-speech tags (ICTCLAS set) for the proper nouns a typed lexicon marks.
_TAG_KINDS = {
    "nr": "person",
    "nrt": "person",  # transliterated names
    "nrfg": "person",  # ancient or foreign personal names
    "ns": "place",
    "nt": "organization",
    "nz": "proper",  # other proper nouns: brands, titles, products
}


def jieba_lexicon(min_freq: int = 2, typed: bool = False) -> Lexicon:
    """Words of 2..MAX_WORD characters with at least ``min_freq`` occurrences in jieba's dict.

    ``typed`` also keeps each proper noun's kind from its part-of-speech tag.
    """
    words: set[str] = set()
    kinds: dict[str, int] = {}
    text = resources.files("jieba").joinpath("dict.txt").read_text(encoding="utf-8")
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        word, freq = parts[0], int(parts[1])
        if 2 <= len(word) <= MAX_WORD and freq >= min_freq:
            norm = "".join(normalize_char(c) or " " for c in word)
            if " " not in norm:
                words.add(norm)
                kind = _TAG_KINDS.get(parts[2]) if typed and len(parts) > 2 else None
                if kind is not None:
                    kinds.setdefault(norm, KINDS.index(kind))
    return Lexicon(words, kinds)


def write_jieba_lexicon(path: Path, min_freq: int = 2, typed: bool = False) -> Path:
    """Save the jieba lexicon as one word per line (a tab and its kind where typed)."""
    jieba_lexicon(min_freq, typed).save(path)
    return path
