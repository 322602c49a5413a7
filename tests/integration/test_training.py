"""Training: a smoke run through the real command ends in a loadable, verified model directory;
the exported ONNX graph computes what the PyTorch network computes."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from nluserve import load_model
from nluserve.models import store
from nluserve.runtime.lexicon import KINDS, N_FEATURES
from nluserve.runtime.results import ClassResult, NerResult
from nluserve.train.compact import compact
from nluserve.train.export import export_onnx
from nluserve.train.net import Ensemble, Net, NetConfig
from tests.conftest import NER_SENTENCES, write_cluener


def train(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nluserve", "train", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def write_reviews(path: Path, copies: int) -> Path:
    """A tiny sentiment CSV in ChnSentiCorp's format: four reviews, ``copies`` times each."""
    rows = [
        ("1", "房间干净，服务周到，下次还来"),
        ("1", "早餐丰富，位置很好"),
        ("0", "太吵了，再也不来"),
        ("0", "卫生很差，服务态度恶劣"),
    ] * copies
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("label", "review"), *rows])
    return path


def test_smoke_ner_training_writes_a_verified_loadable_model(tmp_path: Path) -> None:
    data = write_cluener(tmp_path / "small.jsonl", copies=8)  # 32 sentences
    out = tmp_path / "model"
    proc = train(
        "ner",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--adversarial",
        "0.5",
        "--char-dropout",
        "0.1",
        "--augment",
        "1",
        "--augment-fresh",
        "--lexicon-kinds",
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = store.read_manifest(out)
    store.verify(out, manifest)
    assert set(manifest.files) >= {"model.onnx", "vocab.json", "lexicon.txt"}
    # --lexicon-kinds: proper nouns keep their kind, and the graph takes their columns too
    assert "北京\tplace" in (out / "lexicon.txt").read_text(encoding="utf-8").splitlines()
    from nluserve.runtime.session import OnnxBackend

    width = OnnxBackend(out / manifest.graph, threads=1).input_width("lexicon")
    assert width == N_FEATURES + 3 * len(KINDS)
    assert manifest.training is not None and manifest.training.n_validation == 3
    assert "f1" in manifest.metrics["validation"]
    # it serves windows no longer than the longest sentence it trained on
    assert manifest.max_length == max(len(text) for text, _ in NER_SENTENCES) < 128
    text = "张三在北京大学读书。"
    [res] = load_model(out).predict([text])
    assert isinstance(res, NerResult)
    assert all(text[e.start : e.end] == e.text for e in res.entities)


def test_smoke_classification_training_with_the_linear_mix_and_weight_averaging(
    tmp_path: Path,
) -> None:
    data = write_reviews(tmp_path / "reviews.csv", copies=10)
    out = tmp_path / "sentiment"
    proc = train(
        "classification",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--swa-from",
        "1",
        "--hidden",
        "16",
        "--wide",
        "--linear",
        "--no-lexicon",
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_model(out)
    assert (out / "ngrams.json").is_file()  # the linear part's n-gram index ships with the graph
    notes = model.manifest.training.notes if model.manifest.training else ""
    assert "linear part" in notes
    assert "linear_cv_accuracy" in notes  # C chosen by cross-validation on the training part
    assert "weights averaged over epochs 1-2 of 2" in notes
    assert [lab.code for lab in model.labels] == ["negative", "positive"]
    calibration = model.manifest.metrics["validation"]["calibration"]
    assert isinstance(calibration, dict)
    assert model.manifest.temperature == calibration["temperature"]  # what was fitted is served
    assert calibration["nll_after"] <= calibration["nll_before"]
    results = model.predict(["房间干净，服务周到", "卫生很差"])
    assert all(
        isinstance(r, ClassResult) and abs(sum(r.scores.values()) - 1) < 1e-3 for r in results
    )


@pytest.mark.parametrize(("task", "layers"), [("ner", 1), ("classification", 1), ("ner", 2)])
def test_onnx_runtime_agrees_with_pytorch(task: str, layers: int, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = NetConfig(
        layers=layers,
        n_chars=50,
        n_bigrams=80,
        n_labels=3,
        task=task,
        char_dim=16,
        bigram_dim=8,
        lex_dim=4,
        hidden=16,
        head_dim=8,
        wide=task == "classification",
        linear=task == "classification",
        n_ngrams=40,
    )
    net = Net(cfg).eval()
    if cfg.linear:
        with torch.no_grad():  # non-zero so the fitted linear path is exercised too
            net.lin_ngram.weight[1:].normal_()
            net.lin_bias.normal_()
    path = tmp_path / "model.onnx"
    export_onnx(net, path)
    rng = np.random.default_rng(0)
    lengths = np.array([9, 4, 1], dtype=np.int64)
    chars = rng.integers(1, 50, (3, 9)).astype(np.int64)
    bigrams = rng.integers(1, 80, (3, 9)).astype(np.int64)
    lex = rng.integers(0, 2, (3, 9, N_FEATURES)).astype(np.float32)
    for row, n in enumerate(lengths):
        chars[row, n:] = 0
        bigrams[row, n:] = 0
        lex[row, n:] = 0
    feeds = {"chars": chars, "bigrams": bigrams, "lexicon": lex, "lengths": lengths}
    if cfg.linear:  # rows of different lengths, padded with 0
        feeds["ngrams"] = np.array([[3, 7, 39], [5, 0, 0], [0, 0, 0]], dtype=np.int64)
    with torch.no_grad():
        expected = net(*(torch.from_numpy(a) for a in feeds.values())).numpy()
    from nluserve.runtime.session import OnnxBackend

    got = OnnxBackend(path, threads=1).run(feeds)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("layers", [1, 2])
def test_a_texts_outputs_do_not_depend_on_its_batchs_padding(layers: int) -> None:
    torch.manual_seed(0)
    net = Net(replace(_small_cfg("ner", linear=False), layers=layers)).eval()
    feeds = _feeds(50, 80, linear=False)
    row = 1  # 4 characters, padded to 9 in the batch
    alone = {k: v[row : row + 1, :4] if v.ndim > 1 else v[row : row + 1] for k, v in feeds.items()}
    with torch.no_grad():
        batched = net(*(torch.from_numpy(a) for a in feeds.values())).numpy()
        single = net(*(torch.from_numpy(a) for a in alone.values())).numpy()
    # span logits (batch, labels, start, end): the text's own 4 x 4 spans must match exactly
    assert np.abs(batched[row, :, :4, :4] - single[0]).max() < 1e-5


def _feeds(n_chars: int, n_bigrams: int, linear: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    lengths = np.array([9, 4, 1], dtype=np.int64)
    chars = rng.integers(1, n_chars, (3, 9)).astype(np.int64)
    bigrams = rng.integers(1, n_bigrams, (3, 9)).astype(np.int64)
    lex = rng.integers(0, 2, (3, 9, N_FEATURES)).astype(np.float32)
    for row, n in enumerate(lengths):
        chars[row, n:] = 0
        bigrams[row, n:] = 0
        lex[row, n:] = 0
    feeds = {"chars": chars, "bigrams": bigrams, "lexicon": lex, "lengths": lengths}
    if linear:
        feeds["ngrams"] = np.array([[3, 7, 39], [5, 0, 0], [0, 0, 0]], dtype=np.int64)
    return feeds


def _small_cfg(task: str, linear: bool) -> NetConfig:
    return NetConfig(
        n_chars=50,
        n_bigrams=80,
        n_labels=3,
        task=task,
        char_dim=16,
        bigram_dim=16,
        lex_dim=4,
        hidden=16,
        head_dim=8,
        wide=linear,
        linear=linear,
        n_ngrams=40,
    )


@pytest.mark.parametrize("task", ["ner", "classification"])
def test_an_ensemble_graph_computes_the_mean_of_its_members(task: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    linear = task == "classification"
    cfg = _small_cfg(task, linear)
    members = [Net(replace(cfg, linear=False)).eval() for _ in range(3)]
    ensemble = Ensemble(cfg, members).eval()
    if linear:
        with torch.no_grad():
            ensemble.lin_ngram.weight[1:].normal_()
            ensemble.lin_bias.normal_()
    feeds = _feeds(50, 80, linear)
    tensors = [torch.from_numpy(a) for a in feeds.values()]
    with torch.no_grad():
        expected = torch.stack([m(*tensors[:4]) for m in members]).mean(0)
        if linear:
            expected = expected + ensemble.lin_ngram(tensors[4]).sum(1) + ensemble.lin_bias
        assert torch.allclose(ensemble(*tensors), expected, atol=1e-6)
        assert not torch.allclose(members[0](*tensors[:4]), expected, atol=1e-3)  # seeds differ
    path = tmp_path / "model.onnx"
    export_onnx(ensemble, path)
    from nluserve.runtime.session import OnnxBackend

    got = OnnxBackend(path, threads=1).run(feeds)
    assert np.abs(got - expected.numpy()).max() < 1e-4


@pytest.mark.parametrize("task", ["ner", "classification"])
def test_compact_weights_shrink_the_file_and_keep_the_answers(task: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    linear = task == "classification"
    # Tables large enough that their weights, not the graph's structure, make up the file.
    net = Net(replace(_small_cfg(task, linear), n_chars=500, n_bigrams=3000, hidden=32)).eval()
    full, small = tmp_path / "full.onnx", tmp_path / "small.onnx"
    export_onnx(net, full)
    export_onnx(net, small)
    counts = compact(small, min_elements=256)
    assert counts["int8"] >= 2  # the char and bigram tables (16 wide)
    assert counts["float16"] >= 2  # the LSTM weights
    assert small.stat().st_size < 0.6 * full.stat().st_size
    graph = onnx.load(str(small))
    big_float32 = [
        t.name
        for t in graph.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
        and int(np.prod(t.dims)) >= 256
        and "scale" not in t.name
    ]
    assert big_float32 == []
    from nluserve.runtime.session import OnnxBackend

    feeds = _feeds(50, 80, linear)
    want = OnnxBackend(full, threads=1).run(feeds)
    got = OnnxBackend(small, threads=1).run(feeds)
    assert got.shape == want.shape
    # int8 rows keep about 0.4 % of each row's largest value: small against the logits' range.
    assert np.abs(got - want).max() < 0.02 * max(1.0, float(np.abs(want).max()))
    if task == "classification":
        assert (got.argmax(-1) == want.argmax(-1)).all()


def test_smoke_training_of_an_ensemble_records_each_member(tmp_path: Path) -> None:
    data = write_reviews(tmp_path / "reviews.csv", copies=8)
    out = tmp_path / "ens"
    proc = train(
        "classification",
        "--data",
        str(data),
        "--out",
        str(out),
        "--epochs",
        "2",
        "--hidden",
        "16",
        "--linear",
        "--no-lexicon",
        "--threads",
        "1",
        "--members",
        "2",
        "--compact",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    model = load_model(out)  # checksums verified on load
    notes = model.manifest.training.notes if model.manifest.training else ""
    assert "2 networks (seeds 13-14)" in notes
    assert "validation alone [" in notes
    history = json.loads((out / "history.json").read_text())
    assert {h["seed"] for h in history} == {13, 14}
    graph = onnx.load(str(out / "model.onnx"))
    assert sum(n.op_type == "LSTM" for n in graph.graph.node) == 4  # 2 members x 2 directions
    [res] = model.predict(["房间干净"])
    assert isinstance(res, ClassResult)
