"""The n-gram features a classifier's linear part reads: same at training and serving time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from nluserve.runtime.ngrams import NgramIndex, ngram_keys


def test_keys_are_normalised_distinct_one_to_three_grams() -> None:
    assert ngram_keys("好好") == {"好", "好好"}
    # NFKC + lower case + digits folded, whitespace runs become one space
    assert ngram_keys("Ａ1 \t b") == {"a", "0", " ", "b", "a0", "0 ", " b", "a0 ", "0 b"}
    assert ngram_keys("") == set()


def test_index_keeps_ngrams_seen_in_enough_texts_and_round_trips(tmp_path: Path) -> None:
    index = NgramIndex.build(["服务好", "服务差", "很差"], min_count=2)
    assert set(index.ids) == {"服", "务", "服务", "差"}
    assert sorted(index.ids.values()) == [1, 2, 3, 4]  # 0 is the pad
    index.save(tmp_path / "ngrams.json")
    again = NgramIndex.load(tmp_path / "ngrams.json")
    assert again.ids == index.ids
    assert len(again) == 5


def test_batch_is_padded_with_zero_and_ignores_unknown_ngrams() -> None:
    index = NgramIndex(["服", "务", "服务", "差"])
    batch = index.encode_batch(["服务真差", "好", ""])
    assert batch.dtype == np.int64
    assert batch.tolist() == [[1, 2, 3, 4], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_ids_do_not_depend_on_the_processs_hash_seed() -> None:
    """A seeded training run must write the same ngrams.json in every process."""
    code = (
        "from nluserve.runtime.ngrams import NgramIndex;"
        "print(list(NgramIndex.build(['服务很好，房间干净', '服务很差，房间很脏', '房间干净'], 2).ids))"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env=os.environ | {"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1
