"""The models nluserve ships: they load, verify, and find the obvious things."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nluserve import load_model
from nluserve.models import store
from nluserve.runtime.results import ClassResult, NerResult

SHIPPED = ["general", "medical", "sentiment"]


@pytest.mark.parametrize("name", SHIPPED)
def test_bundled_model_verifies_within_the_size_budget(name: str) -> None:
    path = store.resolve(name)
    manifest = store.read_manifest(path)
    store.verify(path, manifest)
    size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
    assert size <= 25 * 2**20
    assert manifest.metrics["validation"]["n"] > 0
    assert all(lab.zh and lab.en for lab in manifest.labels)


def _entities(model: str, text: str) -> set[tuple[str, str]]:
    [res] = load_model(model).predict([text])
    assert isinstance(res, NerResult)
    assert all(text[e.start : e.end] == e.text for e in res.entities)
    return {(e.text, e.label) for e in res.entities}


def test_general_finds_a_person_and_a_university() -> None:
    found = _entities("general", "张三在北京大学读书。")
    assert ("张三", "name") in found
    assert {("北京大学", "organization"), ("北京大学", "address"), ("北京", "address")} & found


def test_general_finds_people_and_places_in_news() -> None:
    found = _entities("general", "李明昨天从上海出发，前往广州参加会议。")
    assert ("李明", "name") in found
    assert {("上海", "address"), ("广州", "address")} <= found


def test_general_reads_a_long_news_text_in_windows_of_its_training_length() -> None:
    # Served in 128-character windows, this text came back as one 77-character "name" that
    # swallowed the people, places and companies in it.
    text = (
        "新华社北京3月5日电，国务院总理李强在人民大会堂作政府工作报告。报告指出，今年经济增长"
        "目标为5%左右。全国人大代表、华为公司董事长梁华表示，将继续加大研发投入。"
        "来自广东的代表马化腾建议加快数字经济发展。"
    )
    found = _entities("general", text)
    assert {("李强", "name"), ("梁华", "name"), ("马化腾", "name")} <= found
    assert ("广东", "address") in found
    assert max(len(t) for t, _ in found) <= 10


def test_medical_finds_symptoms_and_a_drug() -> None:
    found = _entities("medical", "患者自述发热、咳嗽，服用阿司匹林后好转。")
    assert {("发热", "sym"), ("咳嗽", "sym")} <= found
    assert ("阿司匹林", "dru") in found


def test_schema_aliases_select_entity_types() -> None:
    m = load_model("general")
    assert m.resolve_labels(["人物", "人名", "地理位置", "地点"]) == {"name", "address"}
    assert load_model("medical").resolve_labels(["疾病", "症状", "药物"]) == {"dis", "sym", "dru"}


def test_sentiment_reads_obvious_reviews() -> None:
    results = load_model("sentiment").predict(
        ["房间干净整洁，服务热情周到，下次还会入住。", "房间又脏又吵，前台态度恶劣，再也不来了。"]
    )
    assert all(isinstance(r, ClassResult) for r in results)
    assert [r.label for r in results] == ["positive", "negative"]  # type: ignore[union-attr]


def test_sentiment_scores_are_calibrated_not_saturated() -> None:
    """The shipped temperature turns 0.9999-for-everything into scores that differ by review."""
    model = load_model("sentiment")
    assert model.manifest.temperature > 1.0
    reviews = ["房间干净整洁，服务热情周到，下次还会入住。", "房间还行，就是隔音不太好。"]
    calibrated = model.predict(reviews)
    model.manifest = model.manifest.model_copy(update={"temperature": 1.0})
    raw = model.predict(reviews)
    for c, r in zip(calibrated, raw, strict=True):
        assert isinstance(c, ClassResult) and isinstance(r, ClassResult)
        assert c.label == r.label  # one window: scaling never changes the prediction
        assert c.score < r.score
    assert 0.5 < calibrated[1].score < 0.98  # a mixed review: less sure
    assert calibrated[1].score < calibrated[0].score


def test_models_with_the_same_lexicon_share_one_loaded_copy(tmp_path: Path) -> None:
    from nluserve.runtime.encoders import CharEncoder

    general, medical = load_model("general"), load_model("medical")
    assert isinstance(general.encoder, CharEncoder) and isinstance(medical.encoder, CharEncoder)
    assert general.encoder.lexicon is medical.encoder.lexicon  # same checksum in both manifests
    # A model whose lexicon differs gets its own.
    copy = tmp_path / "general"
    shutil.copytree(general.path, copy)  # type: ignore[arg-type]
    (copy / "lexicon.txt").write_text("张三\n北京大学\n", encoding="utf-8")
    manifest = store.read_manifest(copy)
    store.write_manifest(copy, manifest)  # new checksums
    other = load_model(copy)
    assert isinstance(other.encoder, CharEncoder)
    assert other.encoder.lexicon is not general.encoder.lexicon
    assert other.encoder.lexicon.words == {"张三", "北京大学"}
