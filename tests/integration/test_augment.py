"""Entity-replacement augmentation, with and without a gazetteer from the lexicon's kinds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nluserve.data.readers import Example, GoldSpan
from nluserve.train.trainer import augment
from tests.conftest import write_cluener
from tests.integration.test_training import train

SOURCE = [
    Example("张三在北京大学读书", [GoldSpan(0, 2, "name"), GoldSpan(3, 7, "organization")]),
    Example("李四去了上海", [GoldSpan(0, 2, "name"), GoldSpan(4, 6, "address")]),
    Example("王五和赵六在杭州", [GoldSpan(0, 2, "name"), GoldSpan(3, 5, "name")]),
] * 40
MENTIONS = {
    label: {e.text[s.start : s.end] for e in SOURCE for s in e.spans if s.label == label}
    for label in ("name", "organization", "address")
}


def _check_copies(copies: list[Example]) -> Counter[tuple[str, str]]:
    """Every copy keeps its source's text between entities; returns (label, mention) counts."""
    seen: Counter[tuple[str, str]] = Counter()
    for copy in copies:
        source = next(
            s for s in SOURCE if [x.label for x in s.spans] == [x.label for x in copy.spans]
        )
        cuts_copy = [0, *(p for s in copy.spans for p in (s.start, s.end)), len(copy.text)]
        cuts_src = [0, *(p for s in source.spans for p in (s.start, s.end)), len(source.text)]
        between_copy = [
            copy.text[a:b] for a, b in zip(cuts_copy[::2], cuts_copy[1::2], strict=True)
        ]
        between_src = [source.text[a:b] for a, b in zip(cuts_src[::2], cuts_src[1::2], strict=True)]
        assert between_copy == between_src
        seen.update((s.label, copy.text[s.start : s.end]) for s in copy.spans)
    return seen


def test_replacements_are_training_mentions_of_the_same_label() -> None:
    copies = augment(SOURCE, 2, seed=13)
    assert len(copies) == 2 * len(SOURCE)
    for (label, mention), _ in _check_copies(copies).items():
        assert mention in MENTIONS[label]
    # an empty gazetteer draws nothing more from the generator: the same copies as before
    assert augment(SOURCE, 2, seed=13, gazetteer={}) == copies


def test_a_gazetteer_supplies_about_half_of_its_labels_replacements() -> None:
    gazetteer = {"name": ["孙悟空", "猪八戒", "沙和尚", "唐三藏"]}
    seen = _check_copies(augment(SOURCE, 2, seed=13, gazetteer=gazetteer))
    names = Counter({m: n for (label, m), n in seen.items() if label == "name"})
    from_gazetteer = sum(n for m, n in names.items() if m in gazetteer["name"])
    assert set(names) <= MENTIONS["name"] | set(gazetteer["name"])
    assert 0.4 < from_gazetteer / sum(names.values()) < 0.6
    assert all(m in MENTIONS[label] for (label, m) in seen if label != "name")


def test_the_cli_refuses_an_unknown_kind_or_a_label_the_data_lacks(tmp_path: Path) -> None:
    data = write_cluener(tmp_path / "small.jsonl", copies=2)
    common = ["--data", str(data), "--out", str(tmp_path / "m"), "--epochs", "1", "--augment", "1"]
    bad_kind = train("ner", *common, "--augment-kind", "name=river")
    said = " ".join(bad_kind.stderr.split())  # the console wraps long lines
    assert bad_kind.returncode != 0 and "KIND one of person, place, organization" in said
    bad_label = train("ner", *common, "--no-lexicon", "--augment-kind", "planet=place")
    said = " ".join(bad_label.stderr.split())
    assert bad_label.returncode != 0 and "labels the data does not have: planet" in said
    assert "Traceback" not in bad_kind.stderr + bad_label.stderr
    assert not (tmp_path / "m").exists()
