"""Long texts: windows at punctuation with overlap; merged spans equal one-piece prediction."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from nluserve.runtime import windows
from tests.support.gazetteer import gazetteer_model

WORDS = {
    "name": ["张三丰", "李四"],
    "address": ["北京市海淀区", "上海"],
    "org": ["北京大学", "北京"],
}


def _long_text(seed: int, n: int) -> str:
    rng = random.Random(seed)
    pieces = (
        [w for ws in WORDS.values() for w in ws] + list("的了在是和。，！我他一") + ["\n", "😀"]
    )
    return "".join(rng.choice(pieces) for _ in range(n))


@given(st.text(max_size=400), st.integers(4, 64))
def test_windows_cover_the_text_within_the_length(text: str, max_length: int) -> None:
    ws = windows.split(text, max_length)
    assert ws[0].start == 0 and ws[-1].end == len(text)
    for a, b in itertools.pairwise(ws):
        assert b.start < a.end  # overlap, no gap
        assert b.start > a.start
    assert all(w.end - w.start <= max_length for w in ws)


def test_windows_end_after_sentence_punctuation_when_possible() -> None:
    text = "第一句话很短。" * 20
    ws = windows.split(text, 30)
    assert all(text[w.end - 1] == "。" for w in ws[:-1])


@settings(max_examples=40, deadline=None)
# Entities shorter than the overlap (max_length // 2, at most 32) are guaranteed whole in a window.
@given(st.integers(0, 10_000), st.integers(14, 80), st.booleans())
def test_windowed_prediction_equals_one_piece_prediction(
    seed: int, max_length: int, nested: bool
) -> None:
    text = _long_text(seed, 400)
    windowed = gazetteer_model(WORDS, max_length, nested).predict([text])
    direct = gazetteer_model(WORDS, 100_000, nested).predict([text])
    assert windowed == direct
    assert len(windowed[0].entities) > 10  # type: ignore[union-attr]


def test_entity_across_a_window_boundary_is_found_once() -> None:
    text = "了" * 30 + "北京市海淀区" + "了" * 30
    model = gazetteer_model(WORDS, 32)
    ents = model.predict([text])[0].entities  # type: ignore[union-attr]
    assert [(e.text, e.start, e.end) for e in ents] == [("北京市海淀区", 30, 36)]
