"""Sloppy corpus files and output directories: a clear error naming the place, never a record
dropped or changed in silence, never somebody's files deleted (an audit's findings, kept fixed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nluserve.data.readers import read_examples
from nluserve.errors import DataFormatError
from tests.integration.test_cli import nluserve
from tests.integration.test_cli_operator_errors import one_line_error

# The product side's corpora, beside the checkout (../shared); a clone elsewhere may not have them.
SHARED = next(
    (
        p
        for p in (
            Path(__file__).resolve().parents[3] / "shared" / "data",
            Path("/work/shared/data"),
        )
        if p.is_dir()
    ),
    None,
)
CLUENER_LINE = {"text": "张三在北京大学读书", "label": {"name": {"张三": [[0, 1]]}}}
CMEEE_RECORD = {
    "text": "患者发热三天",
    "entities": [{"start_idx": 2, "end_idx": 3, "type": "sym", "entity": "发热"}],
}


def _write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _jsonl(*records: object) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


@pytest.mark.parametrize(
    ("name", "content", "said"),
    [
        ("quote.csv", 'label,review\n1,"很好\n0,很差\n1,不错\n', "unexpected end of data"),
        ("commas.csv", "label,review\n1,房间很大,服务很好\n0,差\n", ":2: 3 fields"),
        ("short.csv", "label,review\n1\n0,差\n", ":2: 1 fields"),
        ("empty.csv", "label,review\n1,\n0,差\n", ":2: empty review"),
        ("late.csv", 'label,review\n1,"多\n行"\n0,\n', ":4: empty review"),  # file lines
        ("gbk.csv", "label,review\n1,很好\n".encode("gbk"), "not UTF-8"),
        ("array.json", json.dumps([CLUENER_LINE], ensure_ascii=False), "a CLUENER record"),
        ("lines.jsonl", _jsonl(CMEEE_RECORD), "a CMeEE record"),
        (
            "mismatch.jsonl",
            _jsonl({"text": "张三在北京", "label": {"name": {"李四": [[0, 1]]}}}),
            "but the record says '李四'",
        ),
        (
            "mismatch.json",
            json.dumps(
                [{**CMEEE_RECORD, "entities": [{**CMEEE_RECORD["entities"][0], "entity": "头痛"}]}]
            ),  # type: ignore[dict-item]
            "but the record says",
        ),
        (
            "float.jsonl",
            _jsonl({"text": "张三", "label": {"name": {"张三": [[0.0, 1]]}}}),
            "integers",
        ),
        (
            "bool.jsonl",
            _jsonl({"text": "张三", "label": {"name": {"张": [[False, False]]}}}),
            "integers",
        ),
        ("null.jsonl", _jsonl({"text": None, "label": {}}), "not a string"),
        ("listlabel.jsonl", _jsonl({"text": "张三", "label": ["name"]}), "not a CLUENER record"),
    ],
)
def test_a_sloppy_record_is_an_error_naming_its_place(
    tmp_path: Path, name: str, content: str | bytes, said: str
) -> None:
    path = _write(tmp_path / name, content)
    with pytest.raises(DataFormatError, match=None) as raised:
        read_examples(path)
    assert said in str(raised.value), str(raised.value)


def test_quoted_newlines_are_one_review_and_every_row_is_kept(tmp_path: Path) -> None:
    path = _write(tmp_path / "ok.csv", 'label,review\n1,"多\n行"\n0,差\n1,"a, b"\n')
    _, examples = read_examples(path)
    assert [(e.label, e.text) for e in examples] == [("1", "多\n行"), ("0", "差"), ("1", "a, b")]


@pytest.mark.parametrize(
    "relative", ["cluener/train.jsonl", "cmeee/train.json", "chnsenticorp/train.csv"]
)
def test_the_real_corpora_pass_the_strict_reader_whole(relative: str) -> None:
    if SHARED is None:  # training data, not a service: absent from a bare clone
        pytest.skip("../shared/data is not beside this checkout")
    path = SHARED / relative
    _, examples = read_examples(path)
    expected = {
        "cluener/train.jsonl": 10_748,
        "cmeee/train.json": 4_000,
        "chnsenticorp/train.csv": 6_212,
    }
    assert len(examples) == expected[relative]


def test_eval_refuses_files_that_would_score_as_a_result_but_are_not_one(tmp_path: Path) -> None:
    no_gold = _write(tmp_path / "nogold.jsonl", _jsonl({"text": "今天天气很好", "label": {}}))
    one_line_error(nluserve("eval", "general", str(no_gold)), "no gold entities")
    medical = _write(tmp_path / "medical.json", json.dumps([CMEEE_RECORD], ensure_ascii=False))
    one_line_error(nluserve("eval", "general", str(medical)), "none of its entity types", "sym")
    two = _write(tmp_path / "two.csv", "label,review\n1,很好\n2,一般\n")
    one_line_error(nluserve("eval", "sentiment", str(two)), "['2']", "not classes")
    header = _write(tmp_path / "header.csv", "label,review\n")
    one_line_error(nluserve("eval", "sentiment", str(header)), "no records")


def test_train_never_replaces_a_directory_of_other_files(tmp_path: Path) -> None:
    data = _write(tmp_path / "data.jsonl", _jsonl(*[CLUENER_LINE] * 20))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    args = ["--epochs", "1", "--hidden", "8", "--no-lexicon", "--threads", "1"]
    said = one_line_error(
        nluserve("train", "ner", "--data", str(data), "--out", str(precious), *args),
        "not a model directory",
    )
    assert (precious / "thesis.txt").read_text() == "years of work", said
    inside = tmp_path / "inside"  # a model directory, which a retrain may replace...
    inside.mkdir()
    (inside / "manifest.json").write_text("{}")
    own = _write(inside / "data.jsonl", data.read_text(encoding="utf-8"))  # ...but not its data
    one_line_error(
        nluserve("train", "ner", "--data", str(own), "--out", str(inside), *args),
        "lies inside",
    )
    assert own.exists()
    a_file = _write(tmp_path / "a.txt", "x")
    one_line_error(
        nluserve("train", "ner", "--data", str(data), "--out", str(a_file), *args), "is a file"
    )
    one_line_error(
        nluserve(
            "train",
            "ner",
            "--data",
            str(data),
            "--out",
            str(tmp_path / "m"),
            "--val-fraction",
            "1",
            *args,
        ),
        "--val-fraction",
    )
    one_line_error(
        nluserve(
            "train", "classification", "--data", str(data), "--out", str(tmp_path / "c"), *args
        ),
        "classification trains on a CSV",
    )


def test_the_python_api_refuses_one_string_for_a_list() -> None:
    from nluserve import load_model

    model = load_model("general")
    with pytest.raises(TypeError, match="predict\\(\\[text\\]\\)"):
        model.predict("张三在北京大学读书。")
    with pytest.raises(TypeError, match="not int"):
        model.predict(["张三", 5])  # type: ignore[list-item]
