"""Lexicon features are bit-identical to per-position reference loops (the bundled models' original)."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nluserve.errors import ModelIntegrityError
from nluserve.models import store
from nluserve.runtime.encoders import CharEncoder, encoder_for
from nluserve.runtime.lexicon import KINDS, MAX_WORD, N_FEATURES, Lexicon, _bucket
from nluserve.runtime.model import load_model
from nluserve.runtime.results import NerResult
from nluserve.runtime.tokenizer import normalize_char

REAL = [
    "张三在北京大学读书。",
    "患者自述发热、咳嗽三天，体温最高39.2℃，伴有头痛、乏力。",
    "新生儿疾病筛查的发展趋势自1961年开展苯丙酮尿症筛查以来，随着医学技术的发展，符合进行新生儿"
    "疾病筛查标准的疾病也在不断增加。",
    "谷爱凌在北京冬奥会获得金牌，腾讯公司的工程师王五去了上海市浦东新区。",
    "房间干净，服务周到，早餐也很丰富，下次还会再来！",
    "ＡＢＣ全角１２３与ABC半角123 ㎏ ℃ ①②",
    "e\u0301le\u0300ve 北京\u200b大学\u200d张三\ufeff😀🇨🇳",
    "line1\nline2\r\n\t北京\x00\x1b",
    "",
    "北",
    "北京",
]


def reference_features(words: set[str], text: str) -> np.ndarray:
    """The original implementation, kept verbatim as the specification."""
    n = len(text)
    out = np.zeros((n, N_FEATURES), dtype=np.float32)
    if not words:
        return out
    norm = "".join(normalize_char(c) or " " for c in text)
    for i in range(n):
        for length in range(2, min(MAX_WORD, n - i) + 1):
            if norm[i : i + length] in words:
                b = _bucket(length)
                out[i, b] = 1.0
                out[i + length - 1, 8 + b] = 1.0
                if length > 2:
                    out[i + 1 : i + length - 1, 4 + b] = 1.0
    return out


def _same(lexicon: Lexicon, text: str) -> None:
    got = lexicon.features(text)
    want = reference_features(lexicon.words, text)
    assert got.dtype == want.dtype and got.shape == want.shape
    assert np.array_equal(got, want), text


def test_bundled_lexicon_features_match_the_reference_on_real_and_generated_texts() -> None:
    lexicon = Lexicon.load(store.resolve("general") / "lexicon.txt")
    for text in REAL:
        _same(lexicon, text)
    rng = random.Random(7)
    vocabulary = sorted(w for w in lexicon.words if len(w) <= MAX_WORD + 2)
    noise = list("的了在是，。、；：？！ 0123456789abcXYZ㎏①\u0301\u200b😀\n")
    for _ in range(300):
        parts = [
            rng.choice(vocabulary) if rng.random() < 0.7 else rng.choice(noise)
            for _ in range(rng.randint(0, 60))
        ]
        text = "".join(parts)[: rng.randint(0, 200)]
        _same(lexicon, text)


small_words = st.sets(st.text(st.sampled_from("北京大学张三ab0 ㎏\u0301"), min_size=1, max_size=8))
small_texts = st.text(st.sampled_from("北京大学张三李四ab0AB０ \t㎏\u0301😀"), max_size=40)


@given(small_words, small_texts)
def test_features_match_the_reference_for_any_small_lexicon(words: set[str], text: str) -> None:
    _same(Lexicon(words), text)


@given(st.text(st.characters(codec="utf-8"), max_size=60))
def test_features_match_the_reference_on_arbitrary_unicode(text: str) -> None:
    _same(Lexicon({"北京", "北京大学", "ab", "0", "00", "e\u0301l"}), text)


def reference_kind_features(kinds: dict[str, int], text: str) -> np.ndarray:
    """The typed columns, one position at a time: begin, middle, end of each kind's words."""
    out = np.zeros((len(text), 3 * len(KINDS)), dtype=np.float32)
    norm = "".join(normalize_char(c) or " " for c in text)
    for i in range(len(text)):
        for length in range(2, min(MAX_WORD, len(text) - i) + 1):
            kind = kinds.get(norm[i : i + length])
            if kind is not None:
                out[i, 3 * kind] = 1.0
                out[i + 1 : i + length - 1, 3 * kind + 1] = 1.0
                out[i + length - 1, 3 * kind + 2] = 1.0
    return out


def _same_typed(lexicon: Lexicon, text: str) -> None:
    got = lexicon.features(text)
    assert got.shape == (len(text), lexicon.n_features) == (len(text), N_FEATURES + 12)
    assert np.array_equal(got[:, :N_FEATURES], reference_features(lexicon.words, text)), text
    assert np.array_equal(got[:, N_FEATURES:], reference_kind_features(lexicon.kinds, text)), text


TYPED = Lexicon(
    {"北京", "北京大学", "大学", "张三", "谷爱凌", "北京冬奥会", "读书"},
    {"北京": 1, "北京大学": 2, "张三": 0, "谷爱凌": 0, "北京冬奥会": 3},
)


def test_a_typed_lexicon_marks_each_proper_nouns_kind_after_the_untyped_columns() -> None:
    got = TYPED.features("张三在北京大学读书")
    person, place, org = (
        N_FEATURES + 3 * KINDS.index(k) for k in ("person", "place", "organization")
    )
    assert got[0, person] == 1 and got[1, person + 2] == 1  # 张三: begin, end
    assert got[3, place] == 1 and got[4, place + 2] == 1  # 北京 inside 北京大学 keeps its kind
    assert list(got[3:7, org : org + 3].argmax(1)) == [0, 1, 1, 2]  # 北京大学: B M M E
    assert not got[7:, N_FEATURES:].any()  # 读书 is a word without a kind
    for text in REAL:
        _same_typed(TYPED, text)


@given(small_texts)
def test_typed_features_match_the_reference_for_any_text(text: str) -> None:
    _same_typed(TYPED, text)


def test_typed_lexicon_files_round_trip_and_reject_unknown_kinds(tmp_path: Path) -> None:
    path = tmp_path / "lexicon.txt"
    TYPED.save(path)
    assert "北京大学\torganization" in path.read_text(encoding="utf-8").splitlines()
    again = Lexicon.load(path)
    assert (again.words, again.kinds) == (TYPED.words, TYPED.kinds)
    assert Lexicon({"北京"}).n_features == N_FEATURES  # untyped files keep the old width
    path.write_text("北京\tplace\n长江\triver\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lexicon.txt:2: unknown word kind 'river'"):
        Lexicon.load(path)


def test_a_model_whose_lexicon_file_does_not_fit_its_graph_fails_to_load(tmp_path: Path) -> None:
    bundled = store.resolve("general")
    copy = tmp_path / "general"
    shutil.copytree(bundled, copy)
    TYPED.save(copy / "lexicon.txt")  # 24 columns against the graph's 12
    with pytest.raises(
        ModelIntegrityError, match="gives 24 features per character, the graph takes 12"
    ):
        load_model(copy, verify=False)
    # The unverified file carries the bundled manifest's checksum: it must not be what a
    # later load of the bundled model gets from the shared lexicon cache.
    model = load_model("general")
    assert isinstance(model.encoder, CharEncoder)
    assert model.encoder.lexicon.n_features == N_FEATURES
    [result] = model.predict(["张三在北京大学读书"])
    assert isinstance(result, NerResult) and any(e.label == "name" for e in result.entities)


def test_models_whose_lexicons_hold_the_same_words_share_one_word_set(tmp_path: Path) -> None:
    bundled = store.resolve("general")
    manifest = store.read_manifest(bundled)
    plain = encoder_for(manifest, bundled)
    copy = tmp_path / "typed"
    shutil.copytree(bundled, copy)
    assert isinstance(plain, CharEncoder)
    Lexicon(set(plain.lexicon.words), {"北京": 1}).save(copy / "lexicon.txt")
    typed = encoder_for(manifest, copy)  # another file: only the word set can be shared
    assert isinstance(typed, CharEncoder)
    assert typed.lexicon.kinds == {"北京": 1} and typed.lexicon is not plain.lexicon
    assert typed.lexicon.words is plain.lexicon.words
