"""Shared fixtures: tiny real models built by the tests themselves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nluserve.runtime.model import Model, load_model

NER_SENTENCES = [
    ("张三在北京大学读书。", [(0, 2, "name"), (3, 7, "organization")]),
    ("李四去了上海市浦东新区。", [(0, 2, "name"), (4, 10, "address")]),
    ("王五是腾讯公司的工程师", [(0, 2, "name"), (3, 7, "company"), (8, 11, "position")]),
    ("赵六在杭州西湖游玩", [(0, 2, "name"), (3, 5, "address"), (5, 7, "scene")]),
]


def write_cluener(path: Path, copies: int = 10) -> Path:
    """A small CLUENER-format file (inclusive ends, as the corpus stores them)."""
    lines = []
    for _ in range(copies):
        for text, spans in NER_SENTENCES:
            label: dict[str, dict[str, list[list[int]]]] = {}
            for s, e, lab in spans:
                label.setdefault(lab, {}).setdefault(text[s:e], []).append([s, e - 1])
            lines.append(json.dumps({"text": text, "label": label}, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised (untrained) char model: many spans, good for offset properties."""
    import torch

    from nluserve.models.manifest import Manifest
    from nluserve.runtime.lexicon import Lexicon
    from nluserve.runtime.tokenizer import Vocab
    from nluserve.train.catalog import label_for
    from nluserve.train.export import export_model_dir
    from nluserve.train.net import Net, NetConfig

    torch.manual_seed(0)
    vocab = Vocab.build([t for t, _ in NER_SENTENCES] + ["abc 123 😀 é"], min_bigram=1)
    codes = ["address", "name", "organization"]
    net = Net(
        NetConfig(
            n_chars=len(vocab.chars),
            n_bigrams=len(vocab.bigrams),
            n_labels=3,
            task="ner",
            char_dim=16,
            bigram_dim=8,
            lex_dim=4,
            hidden=16,
            head_dim=8,
        )
    )
    # Shift the span scores up so a random net predicts plenty of spans to check offsets on.
    with torch.no_grad():
        net.head.bias.bias.add_(1.5)
    manifest = Manifest(
        name="tiny",
        version="0.0.1",
        task="ner",
        labels=[label_for(c) for c in codes],
        max_length=24,
        nested=False,
    )
    out = tmp_path_factory.mktemp("models") / "tiny"
    export_model_dir(net.eval(), manifest, vocab, Lexicon({"北京", "北京大学", "上海"}), out)
    return out


@pytest.fixture(scope="session")
def tiny_ner(tiny_ner_dir: Path) -> Model:
    return load_model(tiny_ner_dir, threads=1)
