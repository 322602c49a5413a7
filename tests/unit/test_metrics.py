"""Strict micro F1 against a hand-computed fixture with nested gold entities."""

from __future__ import annotations

from pathlib import Path

from nluserve.data.readers import Example, GoldSpan, read_examples
from nluserve.evaluation.metrics import score_classification, score_ner
from nluserve.runtime.results import ClassResult, Entity, NerResult


def test_ner_scores_count_nested_gold_and_exact_spans_only() -> None:
    gold = [
        # "左肺下叶炎" : dis [0,5) contains the nested bod [0,4)
        Example("左肺下叶炎", [GoldSpan(0, 4, "bod"), GoldSpan(0, 5, "dis")]),
        Example("发热咳嗽", [GoldSpan(0, 2, "sym"), GoldSpan(2, 4, "sym")]),
    ]
    pred = [
        NerResult([Entity("左肺下叶", "bod", 0, 4, 0.9), Entity("左肺下叶炎", "sym", 0, 5, 0.8)]),
        NerResult([Entity("发热", "sym", 0, 2, 0.9), Entity("咳", "sym", 2, 3, 0.7)]),
    ]
    s = score_ner(gold, pred)
    # tp = 2 (bod, first sym); predicted 4; gold 4 -> P = R = F1 = 50
    assert (s["precision"], s["recall"], s["f1"]) == (50.0, 50.0, 50.0)
    per = s["per_label"]
    assert isinstance(per, dict)
    assert per["bod"]["f1"] == 100.0
    assert per["dis"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # sym: tp 1, pred 3, gold 2 -> P 33.33, R 50, F1 40
    assert (
        per["sym"]["precision"] == 33.33
        and per["sym"]["recall"] == 50.0
        and per["sym"]["f1"] == 40.0
    )


def test_classification_accuracy_and_macro_f1() -> None:
    gold = [
        Example("a", label="positive"),
        Example("b", label="negative"),
        Example("c", label="positive"),
    ]
    pred = [
        ClassResult("positive", 0.9, {}),
        ClassResult("positive", 0.6, {}),
        ClassResult("positive", 0.8, {}),
    ]
    s = score_classification(gold, pred)
    assert s["accuracy"] == 66.67
    # positive: P 2/3, R 1 -> F1 80; negative: F1 0 -> macro 40
    assert s["macro_f1"] == 40.0


def test_readers_convert_inclusive_ends(tmp_path: Path) -> None:
    cluener = tmp_path / "c.jsonl"
    cluener.write_text(
        '{"text": "叶老桂认为", "label": {"name": {"叶老桂": [[0, 2]]}}}\n', encoding="utf-8"
    )
    fmt, ex = read_examples(cluener)
    assert fmt == "cluener" and ex[0].spans == [GoldSpan(0, 3, "name")]
    cmeee = tmp_path / "m.json"
    cmeee.write_text(
        '[{"text": "咳嗽三天", "entities": [{"start_idx": 0, "end_idx": 1, "type": "sym",'
        ' "entity": "咳嗽"}]}]',
        encoding="utf-8",
    )
    fmt, ex = read_examples(cmeee)
    assert fmt == "cmeee" and ex[0].text[ex[0].spans[0].start : ex[0].spans[0].end] == "咳嗽"
    csv = tmp_path / "s.csv"
    csv.write_text('label,review\n1,"很好,干净"\n0,差\n', encoding="utf-8")
    fmt, ex = read_examples(csv)
    assert fmt == "csv" and [(e.text, e.label) for e in ex] == [("很好,干净", "1"), ("差", "0")]
