"""Building the word lexicon from the dictionary that ships inside the jieba wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nluserve.runtime.lexicon import MAX_WORD, Lexicon
from nluserve.runtime.tokenizer import normalize_char


def jieba_lexicon(min_freq: int = 2) -> Lexicon:
    """Words of 2..MAX_WORD characters with at least ``min_freq`` occurrences in jieba's dict."""
    words: set[str] = set()
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
    return Lexicon(words)


def write_jieba_lexicon(path: Path, min_freq: int = 2) -> Path:
    """Save the jieba lexicon as one word per line."""
    jieba_lexicon(min_freq).save(path)
    return path
