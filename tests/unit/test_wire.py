"""The inference process's message format: arrays cross intact, nothing but numbers crosses."""

from __future__ import annotations

import numpy as np
import pytest

from nluserve.runtime.wire import WireError, join_batches, pack, split_batches, unpack


def test_arrays_and_header_round_trip() -> None:
    arrays = {
        "chars": np.arange(12, dtype=np.int64).reshape(3, 4),
        "lexicon": np.random.default_rng(0).random((3, 4, 12), dtype=np.float32),
        "mask": np.array([True, False, True]),
        "empty": np.zeros((0, 5), dtype=np.float32),
        "half": np.array([1.5, -2.25], dtype=np.float16),
    }
    header, got = unpack(pack({"op": "run", "model": "general"}, arrays))
    assert header == {"op": "run", "model": "general"}
    assert list(got) == list(arrays)
    for name, array in arrays.items():
        assert got[name].dtype == array.dtype
        assert got[name].shape == array.shape
        assert np.array_equal(got[name], array)


def test_non_contiguous_arrays_are_sent_as_their_values() -> None:
    array = np.arange(20, dtype=np.int64).reshape(4, 5)[:, ::2]
    _, got = unpack(pack({}, {"a": array}))
    assert np.array_equal(got["a"], array)


def test_object_arrays_are_refused_both_ways() -> None:
    with pytest.raises(WireError, match="non-numeric"):
        pack({}, {"a": np.array(["x"], dtype=object)})
    head = b'{"arrays": [["a", "|O", [1]]]}'
    with pytest.raises(WireError, match="non-numeric"):
        unpack(len(head).to_bytes(4, "big") + head + b"\0" * 8)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\0\0\0\x05{oops",
        b"\0\0\0\x02{}",  # no "arrays" member
        (lambda h: len(h).to_bytes(4, "big") + h + b"\0" * 4)(b'{"arrays": [["a", "<i8", [1]]]}'),
    ],
)
def test_malformed_messages_are_a_wire_error(data: bytes) -> None:
    with pytest.raises(WireError):
        unpack(data)


def test_bytes_beyond_the_arrays_are_refused() -> None:
    data = pack({}, {"a": np.zeros(2, dtype=np.int64)}) + b"junk"
    with pytest.raises(WireError, match="beyond"):
        unpack(data)


def test_one_calls_batches_cross_in_one_message() -> None:
    batches = [
        {"chars": np.ones((2, 5), dtype=np.int64), "lengths": np.array([5, 3])},
        {"chars": np.zeros((1, 9), dtype=np.int64), "lengths": np.array([9])},
    ]
    header, arrays = unpack(pack({"batches": 2}, join_batches(batches)))
    got = split_batches(arrays, header["batches"])
    assert [list(b) for b in got] == [["chars", "lengths"], ["chars", "lengths"]]
    for mine, theirs in zip(batches, got, strict=True):
        for name in mine:
            assert np.array_equal(mine[name], theirs[name])


@pytest.mark.parametrize(
    ("names", "count"),
    [
        (["0.chars"], 0),
        (["0.chars"], "2"),
        (["0.chars", "2.chars"], 2),
        (["x.chars"], 1),
        (["0."], 1),
        (["0.chars"], 2),
    ],
)
def test_batches_that_do_not_add_up_are_refused(names: list[str], count: object) -> None:
    with pytest.raises(WireError):
        split_batches({name: np.zeros(1) for name in names}, count)
