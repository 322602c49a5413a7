"""Masked-character pretraining: what is hidden, that the encoder learns, that training uses it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from nluserve import load_model
from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.results import ClassResult
from nluserve.runtime.tokenizer import UNK, Vocab
from nluserve.train.net import Encoder, NetConfig
from nluserve.train.pretrain import PretrainConfig, corpus_windows, mask_inputs, pretrain
from nluserve.train.trainer import _collate
from tests.integration.test_training import train


def _inputs(texts: list[str], vocab: Vocab, lexicon: Lexicon) -> list[torch.Tensor]:
    return _collate([encode_batch([t], vocab, lexicon) for t in texts])


def test_a_masked_character_is_hidden_from_every_input_that_spells_it() -> None:
    texts = ["北京大学的学生在上海读书", "南京市长江大桥"]
    vocab = Vocab.build(texts, min_bigram=1)
    lexicon = Lexicon({"北京", "北京大学", "大学", "学生", "上海", "南京", "长江", "大桥"})
    inputs = _inputs(texts, vocab, lexicon)
    masked, chosen = mask_inputs(inputs, 0.3, torch.Generator().manual_seed(1))
    chars, bigrams, lex, lengths = inputs
    m_chars, m_bigrams, m_lex, _ = masked
    assert chosen.sum() > 0
    width = chars.shape[1]
    for row in range(len(texts)):
        for p in range(width):
            if p >= lengths[row]:
                assert not chosen[row, p]  # padding is never a target
                continue
            hidden = bool(chosen[row, p])
            assert (m_chars[row, p] == UNK) == hidden or chars[row, p] == UNK
            if hidden:
                assert m_bigrams[row, p] == UNK  # the bigram it starts
                assert p == 0 or m_bigrams[row, p - 1] == UNK  # the bigram it ends
                assert float(m_lex[row, p].abs().sum()) == 0.0
            else:
                assert m_chars[row, p] == chars[row, p]
                following = p + 1 < width and bool(chosen[row, p + 1])
                if not following:
                    assert m_bigrams[row, p] == bigrams[row, p]
                assert torch.equal(m_lex[row, p], lex[row, p])


def test_pretraining_learns_to_fill_in_masked_characters() -> None:
    torch.manual_seed(0)
    corpus = ["我们住的酒店房间很干净，服务也很周到。", "早餐很丰富，位置很好，交通方便。"] * 40
    vocab = Vocab.build(corpus)
    cfg = NetConfig(
        n_chars=len(vocab.chars),
        n_bigrams=len(vocab.bigrams),
        n_labels=2,
        task="classification",
        char_dim=16,
        bigram_dim=8,
        lex_dim=4,
        hidden=32,
    )
    encoder = Encoder(cfg)
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    history = pretrain(
        encoder,
        corpus,
        vocab,
        Lexicon(set()),
        PretrainConfig(epochs=30, max_length=64, batch_size=8, lr=1e-2, seed=0),
        _collate,
    )
    # Two sentences repeated: after a few epochs the context gives most hidden characters away.
    assert history[0]["masked_accuracy"] < 30
    assert history[-1]["masked_accuracy"] > 60
    assert history[-1]["loss"] < history[0]["loss"]
    changed = [k for k, v in encoder.state_dict().items() if not torch.equal(v, before[k])]
    assert "char_emb.weight" in changed and any(k.startswith("fwd.") for k in changed)


def test_corpus_windows_cut_long_texts_and_drop_blank_ones() -> None:
    assert corpus_windows(["abcdefg", "  ", "xy"], 3) == ["abc", "def", "g", "xy"]
    # A sentence break inside the window is where the cut goes, as the runtime windows text.
    assert corpus_windows(["今天很好。明天下雨"], 7) == ["今天很好。", "明天下雨"]


def test_training_with_pretraining_excludes_validation_and_ships_a_working_model(
    tmp_path: Path,
) -> None:
    data = tmp_path / "reviews.csv"
    reviews = [("1", f"房间干净，服务周到，第{i}次入住") for i in range(20)]
    reviews += [("0", f"卫生很差，太吵了，第{i}次投诉") for i in range(20)]
    with data.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("label", "review"), *reviews])
    out = tmp_path / "sentiment"
    proc = train(
        "classification", "--data", str(data), "--out", str(out), "--epochs", "1",
        "--hidden", "16", "--no-lexicon", "--threads", "1",
        "--pretrain-epochs", "2",
        # The training file again as "extra" text: its validation reviews must be left out.
        "--pretrain-data", str(data),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "pretrain {'epoch': 2" in proc.stderr
    model = load_model(out)
    training = model.manifest.training
    assert training is not None and training.n_train == 36 and training.n_validation == 4
    # 36 training reviews, plus the 40 of the extra file minus the 4 validation reviews.
    assert "encoder pretrained on masked characters: 72 texts" in training.notes
    [res] = model.predict(["房间干净"])
    assert isinstance(res, ClassResult)
    assert np.isclose(sum(res.scores.values()), 1.0, atol=1e-3)
