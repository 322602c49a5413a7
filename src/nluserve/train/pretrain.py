"""Masked-character pretraining of the encoder on unlabelled text, before the task is trained.

Nothing pretrained can be downloaded here, but the training corpora themselves hold far more
text than labels. Predicting masked characters from their context teaches the embeddings and
the BiLSTM what the language looks like before a few thousand labels have to (Dai & Le 2015,
"Semi-supervised Sequence Learning", saw LSTM classifiers gain most from pretraining exactly
on small labelled sets; BERT's masked objective is the form used here because the encoder is
bidirectional).

Every input that reveals a masked character is hidden with it: its character id, both bigrams
that contain it (the one it starts and the one it ends) and its own lexicon features. The
lexicon features of its neighbours still say that some dictionary word spans it, which is a
hint about segmentation, not about the character.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from nluserve.data.readers import read_examples
from nluserve.runtime import windows
from nluserve.runtime.features import encode_batch
from nluserve.runtime.lexicon import Lexicon
from nluserve.runtime.tokenizer import PAD, SPECIALS, UNK, Vocab
from nluserve.train.net import Encoder


@dataclass
class PretrainConfig:
    epochs: int
    max_length: int
    batch_size: int = 32
    lr: float = 2e-3
    mask_rate: float = 0.15
    max_minutes: float = 30.0
    seed: int = 13


def corpus_windows(texts: Sequence[str], max_length: int) -> list[str]:
    """Non-empty texts cut as the runtime windows them (at sentence breaks), without overlap."""
    out: list[str] = []
    for text in texts:
        for w in windows.split(text, max_length, overlap=0):
            piece = text[w.start : w.end]
            if piece.strip():
                out.append(piece)
    return out


def mask_inputs(
    inputs: list[torch.Tensor], rate: float, generator: torch.Generator
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Hide ``rate`` of the real characters; return the masked inputs and the chosen positions."""
    chars, bigrams, lexicon, lengths = inputs
    width = chars.shape[1]
    pos = torch.arange(width).unsqueeze(0)
    real = (pos < lengths.unsqueeze(1)) & (chars >= len(SPECIALS))
    chosen = (torch.rand(chars.shape, generator=generator) < rate) & real
    # The bigram a character ends sits at the previous position.
    ends = torch.zeros_like(chosen)
    ends[:, :-1] = chosen[:, 1:]
    chars = torch.where(chosen, torch.full_like(chars, UNK), chars)
    hidden_bigram = (chosen | ends) & (bigrams != PAD)
    bigrams = torch.where(hidden_bigram, torch.full_like(bigrams, UNK), bigrams)
    lexicon = lexicon * (~chosen).unsqueeze(-1).to(lexicon.dtype)
    return [chars, bigrams, lexicon, lengths], chosen


class MaskedCharModel(nn.Module):
    """The task's encoder plus a softmax over the character vocabulary."""

    def __init__(self, encoder: Encoder, n_chars: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.out = nn.Linear(encoder.out_dim, n_chars)

    def forward(self, inputs: list[torch.Tensor], chosen: torch.Tensor) -> torch.Tensor:
        h, _ = self.encoder(*inputs)
        return self.out(h[chosen])


def pretrain(
    encoder: Encoder,
    texts: Sequence[str],
    vocab: Vocab,
    lexicon: Lexicon,
    cfg: PretrainConfig,
    collate: Callable[[list[dict[str, np.ndarray]]], list[torch.Tensor]],
) -> list[dict[str, float]]:
    """Train ``encoder`` in place on masked-character prediction; return the per-epoch history."""
    pieces = corpus_windows(texts, cfg.max_length)
    feats = [
        encode_batch([t], vocab, lexicon)
        for t in tqdm(pieces, desc="pretraining features", file=sys.stderr, mininterval=2.0)
    ]
    lengths = [len(t) for t in pieces]
    model = MaskedCharModel(encoder, len(vocab.chars))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    total_steps = cfg.epochs * ((len(pieces) + cfg.batch_size - 1) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr, total_steps=max(total_steps, 1), pct_start=0.05
    )
    rng = random.Random(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    started = time.monotonic()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = sorted(range(len(pieces)), key=lambda k: (lengths[k], rng.random()))
        batches = [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        rng.shuffle(batches)
        bar = tqdm(batches, desc=f"pretrain epoch {epoch}", file=sys.stderr, mininterval=2.0)
        running, correct, seen = 0.0, 0, 0
        for step, batch in enumerate(bar, 1):
            inputs = collate([feats[k] for k in batch])
            masked, chosen = mask_inputs(inputs, cfg.mask_rate, gen)
            if not chosen.any():
                continue
            logits = model(masked, chosen)
            target = inputs[0][chosen]
            loss = nn.functional.cross_entropy(logits, target)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            running = 0.98 * running + 0.02 * loss.item() if step > 1 else loss.item()
            correct += int((logits.argmax(-1) == target).sum())
            seen += int(target.numel())
            bar.set_postfix(loss=f"{running:.3f}", acc=f"{100 * correct / max(seen, 1):.1f}")
        minutes = (time.monotonic() - started) / 60
        row = {
            "epoch": epoch,
            "loss": round(running, 4),
            "masked_accuracy": round(100 * correct / max(seen, 1), 2),
            "minutes": round(minutes, 1),
        }
        history.append(row)
        tqdm.write(f"pretrain {row}", file=sys.stderr)
        if minutes >= cfg.max_minutes:
            break
    model.eval()
    return history


def load_texts(paths: Sequence[Path]) -> list[str]:
    """Texts of extra corpus files (any format ``read_examples`` reads); labels are ignored."""
    texts: list[str] = []
    for p in paths:
        texts += [e.text for e in read_examples(p)[1] if e.text.strip()]
    return texts
