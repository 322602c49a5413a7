"""BERT WordPiece tokenization with exact character offsets into the original text (stdlib only).

Reproduces Hugging Face ``tokenizers``' BertNormalizer -> BertPreTokenizer -> WordPiece pipeline
(what ``transformers.BertTokenizer`` runs). Every normalisation step here maps one original
character to zero or more characters and each of them remembers its source index, so a token's
offsets are ``(source of its first char, source of its last char + 1)``, as in ``tokenizers``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

# Rust's char::is_whitespace (the Unicode White_Space property), which BertPreTokenizer splits on.
_WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
)
_PLAIN, _SPACE, _PUNCT = 0, 1, 2
# tokenizers' "other" categories; unassigned code points (Cn) are kept, tab/newline are spaces.
_CONTROL = frozenset({"Cc", "Cf", "Co", "Cs"})
# tokenizers' ranges; 0x2B820-0x2B91F is not among them, unlike in transformers' Python tokenizer.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B920, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)


class WordPieceSettings(BaseModel):
    """Tokenizer options stored in an imported model's manifest (``wordpiece`` field)."""

    model_config = ConfigDict(frozen=True)

    lowercase: bool = True
    strip_accents: bool | None = Field(default=None, description="None: follow lowercase")
    clean_text: bool = True
    chinese_chars: bool = True
    unk_token: str = "[UNK]"
    cls_token: str = "[CLS]"
    sep_token: str = "[SEP]"
    pad_token: str = "[PAD]"
    prefix: str = "##"
    max_chars_per_word: int = 100
    added_tokens: list[str] = Field(
        default_factory=list, description="matched verbatim in the raw text before normalising"
    )


@dataclass(frozen=True)
class Token:
    """One wordpiece with its id and ``[start, end)`` offsets into the original text."""

    text: str
    id: int
    start: int
    end: int


def load_vocab(path: Path) -> dict[str, int]:
    """``vocab.txt``: one token per line, its line number is its id (a repeated line: the last)."""
    lines = path.read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {token: i for i, token in enumerate(lines)}


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_punctuation(ch: str) -> bool:
    return (ch.isascii() and not ch.isalnum() and 33 <= ord(ch) <= 126) or unicodedata.category(
        ch
    ).startswith("P")


class WordPieceTokenizer:
    """Greedy longest-match-first WordPiece over BERT's basic tokenization; thread-safe."""

    def __init__(self, vocab: dict[str, int], settings: WordPieceSettings) -> None:
        self.vocab = vocab
        self.settings = settings
        for special in (
            settings.unk_token,
            settings.cls_token,
            settings.sep_token,
            settings.pad_token,
        ):
            if special not in vocab:
                raise ValueError(f"special token {special!r} is not in the vocabulary")
        self.unk_id = vocab[settings.unk_token]
        self.cls_id = vocab[settings.cls_token]
        self.sep_id = vocab[settings.sep_token]
        self.pad_id = vocab[settings.pad_token]
        self._longest = max((len(t) for t in vocab), default=1)
        added = sorted({t for t in settings.added_tokens if t}, key=len, reverse=True)
        # Longest first, so at one position the longest added token wins (leftmost-longest).
        self._added = re.compile("|".join(map(re.escape, added))) if added else None
        strip = settings.lowercase if settings.strip_accents is None else settings.strip_accents
        self._normalize = lru_cache(maxsize=65536)(
            lambda ch: _classify(_normalize_char(ch, settings, strip))
        )

    def tokenize(self, text: str) -> list[Token]:
        """Wordpieces of ``text`` in order; whitespace and control characters get no token."""
        tokens: list[Token] = []
        pos = 0
        for match in self._added.finditer(text) if self._added else ():
            tokens.extend(self._tokenize_plain(text, pos, match.start()))
            piece = match.group()
            tokens.append(
                Token(piece, self.vocab.get(piece, self.unk_id), match.start(), match.end())
            )
            pos = match.end()
        tokens.extend(self._tokenize_plain(text, pos, len(text)))
        return tokens

    def _tokenize_plain(self, text: str, lo: int, hi: int) -> list[Token]:
        tokens: list[Token] = []
        for word, sources in self._words(text, lo, hi):
            tokens.extend(self._wordpieces(word, sources))
        return tokens

    def _words(self, text: str, lo: int, hi: int) -> list[tuple[str, list[int]]]:
        """Normalise and split on whitespace (dropped) and punctuation (isolated)."""
        words: list[tuple[str, list[int]]] = []
        chars: list[str] = []
        sources: list[int] = []

        def flush() -> None:
            if chars:
                words.append(("".join(chars), sources.copy()))
                chars.clear()
                sources.clear()

        for index in range(lo, hi):
            for ch, kind in self._normalize(text[index]):
                if kind == _PLAIN:
                    chars.append(ch)
                    sources.append(index)
                else:
                    flush()
                    if kind == _PUNCT:
                        words.append((ch, [index]))
        flush()
        return words

    def _wordpieces(self, word: str, sources: list[int]) -> list[Token]:
        n = len(word)
        whole_unk = [Token(self.settings.unk_token, self.unk_id, sources[0], sources[-1] + 1)]
        if n > self.settings.max_chars_per_word:
            return whole_unk
        pieces: list[Token] = []
        start = 0
        prefix = self.settings.prefix
        while start < n:
            end = min(n, start + self._longest)
            while end > start:
                piece = word[start:end] if start == 0 else prefix + word[start:end]
                token_id = self.vocab.get(piece)
                if token_id is not None:
                    pieces.append(Token(piece, token_id, sources[start], sources[end - 1] + 1))
                    break
                end -= 1
            else:
                return whole_unk
            start = end
        return pieces


def _classify(normalized: str) -> tuple[tuple[str, int], ...]:
    """Each character with what BertPreTokenizer does with it: keep, split on, or isolate."""
    return tuple(
        (c, _SPACE if c in _WHITE_SPACE else _PUNCT if _is_punctuation(c) else _PLAIN)
        for c in normalized
    )


def _normalize_char(ch: str, settings: WordPieceSettings, strip_accents: bool) -> str:
    """BertNormalizer applied to one character: clean, isolate CJK, strip accents, lower case."""
    if settings.clean_text:
        if ch in "\x00\ufffd" or (unicodedata.category(ch) in _CONTROL and ch not in "\t\n\r"):
            return ""
        if ch in _WHITE_SPACE:
            return " "
    out = f" {ch} " if settings.chinese_chars and _is_cjk(ch) else ch
    if strip_accents:
        out = "".join(
            c for c in unicodedata.normalize("NFD", out) if unicodedata.category(c) != "Mn"
        )
    if settings.lowercase:
        out = "".join(c.lower() for c in out)
    return out
