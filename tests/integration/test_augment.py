"""Entity-replacement augmentation, with and without a gazetteer from the lexicon's kinds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from nluserve.data.readers import Example, GoldSpan
from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.tokenizer import Vocab
from nluserve.train.trainer import EpochData, TrainConfig, augment, epoch_copies, training_windows
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


def _config(fresh: bool) -> TrainConfig:
    return TrainConfig("ner", Path("unused"), Path("unused"), "m", augment=1, augment_fresh=fresh)


def test_fresh_augmentation_draws_other_replacements_each_epoch() -> None:
    once, fresh = _config(fresh=False), _config(fresh=True)
    first = epoch_copies(once, SOURCE, {}, 1)
    # without --augment-fresh every epoch trains on the same draw; with it, epoch 1 is that draw
    assert epoch_copies(once, SOURCE, {}, 5) == first
    assert epoch_copies(fresh, SOURCE, {}, 1) == first
    later = [epoch_copies(fresh, SOURCE, {}, epoch) for epoch in (2, 3)]
    assert later[0] != first and later[1] != later[0]
    assert epoch_copies(fresh, SOURCE, {}, 2) == later[0]  # seeded: a rerun draws the same
    for copies in later:
        _check_copies(copies)
    # over a few epochs the network meets more of the mention combinations than one draw shows
    assert len({c.text for c in first + later[0] + later[1]}) > len({c.text for c in first})


def test_an_epoch_swaps_in_its_own_copies_and_their_features() -> None:
    cfg = _config(fresh=True)
    vocab = Vocab.build(e.text for e in SOURCE)
    lexicon = Lexicon({"北京", "北京大学", "上海"})
    fixed = training_windows(SOURCE, cfg.max_length)
    items = fixed + epoch_copies(cfg, SOURCE, {}, 1)
    data = EpochData(
        items,
        [encode_batch([e.text], vocab, lexicon) for e in items],
        [len(e.text) for e in items],
        [],
        {},
        fresh=lambda epoch: epoch_copies(cfg, SOURCE, {}, epoch),
        n_fixed=len(fixed),
        encode=lambda text: encode_batch([text], vocab, lexicon),
    )
    data.for_epoch(2)
    assert items == fixed + epoch_copies(cfg, SOURCE, {}, 1)  # the next member starts from these
    expected = fixed + epoch_copies(cfg, SOURCE, {}, 2)
    assert data.items == expected
    assert data.lengths == [len(e.text) for e in expected]
    assert len(data.feats) == len(expected)
    for item, feats in zip(data.items, data.feats, strict=True):
        want = encode_batch([item.text], vocab, lexicon)
        assert want.keys() == feats.keys()
        assert all((want[k] == feats[k]).all() for k in want)


NESTED = [
    # 右肺 (bod) inside 右肺咳嗽 (sym) is a group; 发热 stands alone
    Example(
        "患者右肺咳嗽伴发热三天",
        [GoldSpan(2, 6, "sym"), GoldSpan(2, 4, "bod"), GoldSpan(7, 9, "sym")],
    ),
    Example("予头孢曲松治疗", [GoldSpan(1, 5, "dru")]),
    # only overlapping entities: nothing to replace, so never copied
    Example("腹痛", [GoldSpan(0, 2, "sym"), GoldSpan(0, 1, "bod")]),
] * 20


def test_nested_sentences_are_copied_only_with_augment_nested() -> None:
    flat_only = augment(NESTED, 1, seed=13)
    assert {c.text for c in flat_only} <= {
        "予" + e.text[s.start : s.end] + "治疗" for e in NESTED for s in e.spans if s.label == "dru"
    }
    copies = augment(NESTED, 1, seed=13, keep_overlaps=True)
    assert len(copies) == 40  # the first two sentences, not the one made of overlaps alone
    symptoms = {"右肺咳嗽", "发热", "腹痛"}  # every training mention of sym
    for copy in copies:
        found = {(copy.text[s.start : s.end], s.label) for s in copy.spans}
        if len(copy.spans) == 3:
            # the group stays whole, with both of its spans; the lone symptom is replaced
            assert copy.text.startswith("患者右肺咳嗽伴") and copy.text.endswith("三天")
            assert {("右肺咳嗽", "sym"), ("右肺", "bod")} <= found
            lone = next(s for s in copy.spans if s.start >= 7)
            assert lone.label == "sym" and copy.text[lone.start : lone.end] in symptoms
        else:
            assert len(found) == 1 and next(iter(found))[1] == "dru"
    # the replacements follow the flat path's draws for flat data: nothing changes there
    assert augment(SOURCE, 2, seed=13, keep_overlaps=True) == augment(SOURCE, 2, seed=13)
