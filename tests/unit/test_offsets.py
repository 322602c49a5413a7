"""Offsets are exact on arbitrary Unicode: one token per code point, text[start:end] == entity."""

from __future__ import annotations

import unicodedata

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.model import Model
from nluserve.runtime.results import NerResult
from nluserve.runtime.tokenizer import SPACE, UNK, Vocab, normalize_char

TRICKY = [
    "张三在北京大学读书。",
    "ＡＢＣ全角１２３与ABC半角123",
    "😀北京😀大学🇨🇳",
    "e\u0301le\u0300ve 北京",
    "北京\u200b大学\u200d张三\ufeff",
    "line1\nline2\r\n\t北京",
    "\x00\x01\x7f北京大学\x1b",
    "   ",
    "",
]
unicode_text = st.text(st.characters(codec="utf-8"), max_size=80) | st.sampled_from(TRICKY)


@given(unicode_text)
def test_encoding_has_one_token_per_code_point(text: str) -> None:
    vocab = Vocab.build(["北京大学"])
    chars, bigrams = vocab.encode(text)
    assert len(chars) == len(bigrams) == len(text)
    batch = encode_batch([text, "北京"], vocab, Lexicon({"北京"}))
    assert batch["chars"].shape[1] == max(len(text), 2, 1)
    assert batch["lexicon"].shape[:2] == batch["chars"].shape


def test_whitespace_and_control_characters_share_the_space_id() -> None:
    vocab = Vocab.build(["北京"])
    chars, _ = vocab.encode(" \t\n\u200b\x00\u3000")
    assert chars == [SPACE] * 6
    assert vocab.encode("鑫")[0] == [UNK]


def test_full_width_and_half_width_map_to_one_id() -> None:
    assert normalize_char("Ａ") == normalize_char("a") == "a"
    assert normalize_char("１") == normalize_char("7") == "0"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(unicode_text, min_size=1, max_size=4))
def test_entities_are_exact_slices_of_the_input(tiny_ner: Model, texts: list[str]) -> None:
    results = tiny_ner.predict(texts)
    assert len(results) == len(texts)
    for text, res in zip(texts, results, strict=True):
        assert isinstance(res, NerResult)
        for ent in res.entities:
            assert 0 <= ent.start < ent.end <= len(text)
            assert text[ent.start : ent.end] == ent.text
            assert 0.5 <= ent.score <= 1.0
            assert not _blank(ent.text[0]) and not _blank(ent.text[-1])


def _blank(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")


def test_tricky_inputs_yield_entities_with_exact_offsets(tiny_ner: Model) -> None:
    results = tiny_ner.predict(TRICKY)
    found = sum(len(r.entities) for r in results if isinstance(r, NerResult))
    assert found > 0  # the random tiny model predicts spans, so the offsets above were exercised
    for text, res in zip(TRICKY, results, strict=True):
        assert isinstance(res, NerResult)
        assert all(text[e.start : e.end] == e.text for e in res.entities)
        # a span reaching into spaces, NUL or ZWSP is cut back to its first and last character
        assert all(not _blank(e.text[0]) and not _blank(e.text[-1]) for e in res.entities)
