"""``nluserve model import``: tiny random BERT checkpoints served with transformers' exact answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertTokenizer,
)
from typer.testing import CliRunner

from nluserve import ClassResult, NerResult, load_model
from nluserve.cli.app import app
from nluserve.runtime.model import Model
from nluserve.train import hf_import

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
CLASSES = ["negative", "positive", "neutral"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_POSITIONS = 64
TEXTS = [
    "张三在北京大学读书。",
    "ab1cd 丁七万 2024年",
    "  丈三\t上下\n不与😀 abcd!",
    "Hello 世界, HELLO new york 12 ab",
    "😀👍🏻 丑专且 xyz é É ß",
    "北京\u200b大学\u3000张三\x00李四",
    "a",
    "",
    "   ",
    "ab[SEP]cd 上海市 [UNK]",
]


def vocabulary() -> list[str]:
    """Specials, a few hundred CJK characters, Latin wordpieces, digits and punctuation."""
    cjk = [chr(c) for c in range(0x4E00, 0x4E00 + 300)] + list(
        "张李王赵在北京大学读书海市年月日世界"
    )
    latin = ["ab", "##cd", "cd", "##ab", "hello", "he", "##llo", "world", "new", "york", "##s"]
    latin += [*"abcdexyz", *(f"##{c}" for c in "abcdexyz")]
    digits = [*"0123456789", *(f"##{d}" for d in range(10)), "20", "##24"]
    punct = [*",.!?[]，。！？", "😀"]
    return list(dict.fromkeys(SPECIALS + cjk + latin + digits + punct))


VOCAB = vocabulary()


def tiny_config(vocab_size: int, labels: list[str]) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        id2label=dict(enumerate(labels)),
        label2id={lab: i for i, lab in enumerate(labels)},
    )


def save_checkpoint(model: Any, directory: Path) -> Path:
    """A checkpoint as ``save_pretrained`` writes it, tokenizer included."""
    directory.mkdir(parents=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    model.save_pretrained(directory)
    BertTokenizer(vocab=str(vocab)).save_pretrained(directory)
    return directory


def run_import(src: Path, out: Path) -> None:
    result = CliRunner().invoke(app, ["model", "import", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output


def spread_classifier(model: Any) -> Any:
    """Large classifier weights: random logits far apart, so no argmax is a near-tie."""
    torch.manual_seed(1)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 1.0)
        model.classifier.bias.normal_(0.0, 1.0)
    return model.eval()


@pytest.fixture(scope="module")
def ner_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, BertTokenizer, Model]:
    base = tmp_path_factory.mktemp("hf_ner")
    torch.manual_seed(0)
    hf_model = spread_classifier(BertForTokenClassification(tiny_config(len(VOCAB), TAGS)))
    src = save_checkpoint(hf_model, base / "checkpoint")
    run_import(src, base / "imported")
    return hf_model, BertTokenizer.from_pretrained(src), load_model(base / "imported", threads=1)


@pytest.fixture(scope="module")
def cls_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, BertTokenizer, Model]:
    base = tmp_path_factory.mktemp("hf_cls")
    torch.manual_seed(0)
    hf_model = spread_classifier(BertForSequenceClassification(tiny_config(len(VOCAB), CLASSES)))
    src = save_checkpoint(hf_model, base / "checkpoint")
    # The vocab.txt + tokenizer_config.json route, as older checkpoints ship.
    (src / "tokenizer.json").unlink()
    run_import(src, base / "imported")
    return hf_model, BertTokenizer.from_pretrained(src), load_model(base / "imported", threads=1)


def torch_logits(model: Any, tokenizer: BertTokenizer, texts: list[str]) -> tuple[Any, np.ndarray]:
    enc = tokenizer(texts, padding=True, return_tensors="pt", return_offsets_mapping=True)
    with torch.no_grad():
        logits = model(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=enc["token_type_ids"],
        ).logits
    return enc, logits.numpy()


def decode_bio(tags: list[str]) -> list[tuple[int, int, str]]:
    """Reference BIO decoding (seqeval-style: a stray I- starts a chunk): (first, last, type)."""
    chunks: list[list[Any]] = []
    for k, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        if tag == "O":
            continue
        if prefix == "B" or not chunks or chunks[-1][1] != k - 1 or chunks[-1][2] != kind:
            chunks.append([k, k, kind])
        else:
            chunks[-1][1] = k
    return [(first, last, kind) for first, last, kind in chunks]


@pytest.mark.parametrize("case", ["ner_case", "cls_case"])
def test_wordpiece_tokens_and_offsets_match_transformers(
    case: str, request: pytest.FixtureRequest
) -> None:
    _, tokenizer, model = request.getfixturevalue(case)
    ours = model.encoder.tokenizer
    for text in TEXTS:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        got = ours.tokenize(text)
        assert [t.text for t in got] == tokenizer.tokenize(text), text
        assert [t.id for t in got] == enc["input_ids"], text
        assert [(t.start, t.end) for t in got] == [tuple(o) for o in enc["offset_mapping"]], text


@pytest.mark.parametrize("case", ["ner_case", "cls_case"])
def test_onnx_logits_equal_transformers_logits(case: str, request: pytest.FixtureRequest) -> None:
    hf_model, tokenizer, model = request.getfixturevalue(case)
    enc, want = torch_logits(hf_model, tokenizer, TEXTS)
    feeds = model.encoder(TEXTS)
    np.testing.assert_array_equal(feeds["input_ids"], enc["input_ids"].numpy())
    np.testing.assert_array_equal(feeds["attention_mask"], enc["attention_mask"].numpy())
    got = model.backend.run(feeds)
    if case == "ner_case":
        real = enc["attention_mask"].numpy() == 1
        np.testing.assert_allclose(got[real], want[real], atol=1e-4, rtol=0)
    else:
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)


def test_entities_equal_those_decoded_from_transformers_tags(ner_case: Any) -> None:
    hf_model, tokenizer, model = ner_case
    enc, logits = torch_logits(hf_model, tokenizer, TEXTS)
    probs = torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()
    n_entities = 0
    for row, (text, result) in enumerate(zip(TEXTS, model.predict(TEXTS), strict=True)):
        assert isinstance(result, NerResult)
        content = range(1, int(enc["attention_mask"][row].sum()) - 1)  # between [CLS] and [SEP]
        best = [int(probs[row, k].argmax()) for k in content]
        offsets = [tuple(enc["offset_mapping"][row][k].tolist()) for k in content]
        want = [
            (
                offsets[first][0],
                offsets[last][1],
                kind,
                [probs[row, content[k], best[k]] for k in range(first, last + 1)],
            )
            for first, last, kind in decode_bio([TAGS[b] for b in best])
        ]
        assert [(e.start, e.end, e.label) for e in result.entities] == [w[:3] for w in want], text
        for entity, (*_, chosen) in zip(result.entities, want, strict=True):
            assert entity.score == pytest.approx(float(np.mean(chosen)), abs=2e-4)
            assert text[entity.start : entity.end] == entity.text
        n_entities += len(result.entities)
    assert n_entities >= 5  # the random tagger must exercise the decoder


def test_long_text_windows_keep_exact_offsets(ner_case: Any) -> None:
    _, _, model = ner_case
    text = "".join(TEXTS) * 6
    assert len(text) > 3 * model.manifest.max_length
    [result] = model.predict([text])
    assert isinstance(result, NerResult) and result.entities
    previous_end = 0
    for entity in result.entities:
        assert text[entity.start : entity.end] == entity.text
        assert entity.start >= previous_end  # flat: no overlaps after merging windows
        previous_end = entity.end


def test_class_probabilities_equal_transformers(cls_case: Any) -> None:
    hf_model, tokenizer, model = cls_case
    _, logits = torch_logits(hf_model, tokenizer, TEXTS)
    want = torch.softmax(torch.from_numpy(logits).double(), dim=-1).numpy()
    for row, result in enumerate(model.predict(TEXTS)):
        assert isinstance(result, ClassResult)
        got = [result.scores[c] for c in CLASSES]
        np.testing.assert_allclose(got, want[row], atol=1e-4, rtol=0)
        assert result.label == CLASSES[int(want[row].argmax())]


def test_manifest_records_the_tokenizer_and_tags(ner_case: Any, cls_case: Any) -> None:
    ner, cls = ner_case[2].manifest, cls_case[2].manifest
    assert ner.encoder == cls.encoder == "wordpiece"
    assert [lab.code for lab in ner.labels] == ["PER", "LOC"]
    assert ner.model_extra["tags"] == TAGS
    assert ner.max_length == MAX_POSITIONS - 2
    assert [lab.code for lab in cls.labels] == CLASSES
    assert cls.labels[0].zh == "负面"  # display names from the catalog
    assert cls.model_extra["wordpiece"]["lowercase"] is True


def test_directory_without_config_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "not-a-checkpoint"
    src.mkdir()
    (src / "vocab.txt").write_text("[UNK]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["model", "import", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert "no config.json, not a Hugging Face checkpoint" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o").exists()


def fake_checkpoint(directory: Path, architecture: str) -> Path:
    """config, (empty) weights and vocabulary: enough for the checks before any weights load."""
    directory.mkdir()
    config = {"architectures": [architecture], "id2label": dict(enumerate(TAGS))}
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (directory / "model.safetensors").write_bytes(b"")
    (directory / "vocab.txt").write_text("".join(t + "\n" for t in VOCAB), encoding="utf-8")
    return directory


def test_non_classification_architecture_is_a_clear_error(tmp_path: Path) -> None:
    src = fake_checkpoint(tmp_path / "mlm", "BertForMaskedLM")
    result = CliRunner().invoke(app, ["model", "import", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "not a token or sequence classification model" in result.output


def test_missing_train_extra_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = fake_checkpoint(tmp_path / "ner", "BertForTokenClassification")
    monkeypatch.setattr(hf_import, "missing_modules", lambda: ["torch"])
    result = CliRunner().invoke(app, ["model", "import", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "needs the train extra" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o").exists()
