"""A batch gives the same results as its texts one by one (padding is masked exactly)."""

from __future__ import annotations

from nluserve.runtime.model import Model
from nluserve.runtime.results import NerResult

TEXTS = [
    "张三在北京大学读书。",
    "短",
    "",
    "李四去了上海市浦东新区，" * 5,
    "abc 123 😀",
    "王五是腾讯公司的工程师",
]


def _key(res: object) -> list[tuple[int, int, str]]:
    assert isinstance(res, NerResult)
    return [(e.start, e.end, e.label) for e in res.entities]


def test_batch_equals_one_by_one(tiny_ner: Model) -> None:
    batch = tiny_ner.predict(TEXTS)
    single = [tiny_ner.predict([t])[0] for t in TEXTS]
    assert [_key(r) for r in batch] == [_key(r) for r in single]
    for b, s in zip(batch, single, strict=True):
        assert isinstance(b, NerResult) and isinstance(s, NerResult)
        for eb, es in zip(b.entities, s.entities, strict=True):
            assert abs(eb.score - es.score) < 1e-3


def test_graph_outputs_ignore_padding(tiny_ner: Model) -> None:
    feeds = tiny_ner.encoder(["张三", "张三在北京大学读书"])
    alone = tiny_ner.encoder(["张三"])
    both = tiny_ner.backend.run(feeds)
    one = tiny_ner.backend.run(alone)
    assert abs(both[0, :, :2, :2] - one[0]).max() < 1e-4


def test_label_filter_accepts_codes_display_names_and_aliases(tiny_ner: Model) -> None:
    assert tiny_ner.resolve_labels(["人物", "地理位置", "organization"]) == {
        "name",
        "address",
        "organization",
    }
    kept = tiny_ner.predict(TEXTS, labels=["人名"])
    assert all(e.label == "name" for r in kept for e in r.entities)  # type: ignore[union-attr]
