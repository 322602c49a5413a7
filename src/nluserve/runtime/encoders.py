"""Choosing the input encoder a model directory declares."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from nluserve.errors import ModelIntegrityError
from nluserve.models.manifest import Manifest
from nluserve.runtime.decoders import OFFSETS
from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.ngrams import FILE as NGRAMS_FILE
from nluserve.runtime.ngrams import NgramIndex
from nluserve.runtime.tokenizer import Vocab
from nluserve.runtime.wordpiece import WordPieceSettings, WordPieceTokenizer, load_vocab


class CharEncoder:
    """Character, bigram and lexicon inputs for the models nluserve trains.

    A classifier with an n-gram linear part also gets ``ngrams``, the ids of the character
    n-grams each text contains (see runtime/ngrams.py).
    """

    def __init__(self, vocab: Vocab, lexicon: Lexicon, ngrams: NgramIndex | None = None) -> None:
        self.vocab = vocab
        self.lexicon = lexicon
        self.ngrams = ngrams

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Padded arrays for one batch."""
        feeds = encode_batch(texts, self.vocab, self.lexicon)
        if self.ngrams is not None:
            feeds["ngrams"] = self.ngrams.encode_batch(texts)
        return feeds


class WordPieceEncoder:
    """``[CLS] pieces [SEP]`` inputs for imported BERT models, plus each piece's char offsets."""

    def __init__(self, tokenizer: WordPieceTokenizer, max_tokens: int) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Padded ids, mask, segment ids and ``offsets`` (-1 outside the text's pieces)."""
        # A window holds at most max_tokens characters and almost every piece covers at least one,
        # so the cut only bites on characters that expand (Hangul syllables decompose to jamo).
        rows = [self.tokenizer.tokenize(text)[: self.max_tokens] for text in texts]
        width = max((len(r) for r in rows), default=0) + 2
        tok = self.tokenizer
        ids = np.full((len(texts), width), tok.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        offsets = np.full((len(texts), width, 2), -1, dtype=np.int64)
        for row, pieces in enumerate(rows):
            n = len(pieces)
            ids[row, : n + 2] = [tok.cls_id, *(p.id for p in pieces), tok.sep_id]
            mask[row, : n + 2] = 1
            if n:
                offsets[row, 1 : n + 1] = [(p.start, p.end) for p in pieces]
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "token_type_ids": np.zeros_like(ids),
            OFFSETS: offsets,
        }


_LEXICONS: dict[str, Lexicon] = {}


def _sharing_words(lexicon: Lexicon) -> Lexicon:
    """Reuse an already loaded lexicon's word set when equal (a typed file of the same words)."""
    for other in _LEXICONS.values():
        if other.words == lexicon.words:
            lexicon.words = other.words
            break
    return lexicon


def encoder_for(manifest: Manifest, path: Path) -> CharEncoder | WordPieceEncoder:
    """The encoder for a model directory, reading its vocabulary files."""
    if manifest.encoder == "wordpiece":
        raw = (manifest.model_extra or {}).get("wordpiece", {})
        try:
            settings = WordPieceSettings.model_validate(raw)
            tokenizer = WordPieceTokenizer(load_vocab(path / "vocab.txt"), settings)
        except (ValidationError, ValueError, OSError) as exc:
            raise ModelIntegrityError(f"{path}: bad wordpiece tokenizer: {exc}") from exc
        return WordPieceEncoder(tokenizer, manifest.max_length)
    lexicon_path = path / "lexicon.txt"
    if not lexicon_path.is_file():
        lexicon = Lexicon(set())
    else:
        # The bundled models ship the same jieba dictionary (57 MiB as a Python set): models
        # whose files hold the same bytes share one loaded copy instead of one each. The key is
        # the file's own hash, not the manifest's: a directory loaded unverified must not put
        # another file under a checksum that verified models trust (3.3 MB hashes in ~5 ms).
        digest = hashlib.sha256(lexicon_path.read_bytes()).hexdigest()
        lexicon = _LEXICONS.get(digest) or _LEXICONS.setdefault(
            digest, _sharing_words(Lexicon.load(lexicon_path))
        )
    ngrams = NgramIndex.load(path / NGRAMS_FILE) if (path / NGRAMS_FILE).is_file() else None
    return CharEncoder(Vocab.load(path / "vocab.json"), lexicon, ngrams)
