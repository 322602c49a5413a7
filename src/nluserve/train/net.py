"""The networks: a char + bigram + lexicon BiLSTM encoder with a span (GlobalPointer) or class head."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from nluserve.runtime.lexicon import N_FEATURES

NEG = -1e4  # masked logit; finite so ONNX graphs and fp32 stay NaN-free


@dataclass
class NetConfig:
    n_chars: int
    n_bigrams: int
    n_labels: int
    task: str  # "ner" | "classification"
    char_dim: int = 128
    bigram_dim: int = 64
    lex_dim: int = 32
    hidden: int = 192
    layers: int = 1  # stacked BiLSTM layers
    head_dim: int = 64
    dropout: float = 0.3
    wide: bool = False  # classification: add a linear bag-of-(char, bigram) path (wide & deep)
    linear: bool = False  # classification: a separately fitted linear model added to the logits
    n_ngrams: int = 0  # size of the linear part's n-gram index (runtime/ngrams.py), pad included
    lex_features: int = N_FEATURES  # lexicon columns: more when the lexicon is typed

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


class Encoder(nn.Module):
    """BiLSTM whose backward pass reverses each text within its own length.

    Reversing per length (instead of nn.LSTM(bidirectional=True) over padded input) makes a
    text's outputs independent of how much padding its batch has: batch == one by one.
    Layers above the first (``layers``) read the concatenated outputs of the one below.
    """

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.char_emb = nn.Embedding(cfg.n_chars, cfg.char_dim, padding_idx=0)
        self.bigram_emb = nn.Embedding(cfg.n_bigrams, cfg.bigram_dim, padding_idx=0)
        self.lex = nn.Linear(cfg.lex_features, cfg.lex_dim)
        width = cfg.char_dim + 2 * cfg.bigram_dim + cfg.lex_dim
        self.drop = nn.Dropout(cfg.dropout)
        self.fwd = nn.LSTM(width, cfg.hidden, batch_first=True)
        self.bwd = nn.LSTM(width, cfg.hidden, batch_first=True)
        # The first layer keeps its attribute names, so one-layer checkpoints load unchanged.
        self.upper = nn.ModuleList(
            nn.ModuleList(
                [
                    nn.LSTM(2 * cfg.hidden, cfg.hidden, batch_first=True),
                    nn.LSTM(2 * cfg.hidden, cfg.hidden, batch_first=True),
                ]
            )
            for _ in range(cfg.layers - 1)
        )
        self.out_dim = 2 * cfg.hidden

    def forward(
        self,
        chars: torch.Tensor,
        bigrams: torch.Tensor,
        lexicon: torch.Tensor,
        lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        width = chars.shape[1]
        pos = torch.arange(width, device=chars.device).unsqueeze(0)
        mask = pos < lengths.unsqueeze(1)
        prev_idx = (pos - 1).clamp(min=0).expand_as(bigrams)
        prev = torch.gather(bigrams, 1, prev_idx) * (pos > 0).to(bigrams.dtype)
        x = torch.cat(
            [
                self.char_emb(chars),
                self.bigram_emb(bigrams),
                self.bigram_emb(prev),
                torch.relu(self.lex(lexicon)),
            ],
            dim=-1,
        )
        keep = mask.unsqueeze(-1).to(x.dtype)
        x = self.drop(x) * keep
        rev = torch.where(mask, lengths.unsqueeze(1) - 1 - pos, pos)
        h = _bidirectional(self.fwd, self.bwd, x, rev) * keep
        for fwd, bwd in self.upper:
            h = _bidirectional(fwd, bwd, self.drop(h), rev) * keep
        return self.drop(h), mask


def _bidirectional(
    fwd: nn.Module, bwd: nn.Module, x: torch.Tensor, rev: torch.Tensor
) -> torch.Tensor:
    """Forward and per-length-reversed backward LSTM outputs, concatenated per position."""
    h_f, _ = fwd(x)
    h_b, _ = bwd(torch.gather(x, 1, rev.unsqueeze(-1).expand(-1, -1, x.shape[-1])))
    h_b = torch.gather(h_b, 1, rev.unsqueeze(-1).expand(-1, -1, h_b.shape[-1]))
    return torch.cat([h_f, h_b], dim=-1)


def rope(x: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding (half-split form, which exports to ONNX with dynamic length)."""
    width, half = x.shape[1], x.shape[2] // 2
    pos = torch.arange(width, dtype=x.dtype, device=x.device).unsqueeze(1)
    freq = torch.exp(
        torch.arange(half, dtype=x.dtype, device=x.device) * (-2.0 * math.log(10000.0) / x.shape[2])
    )
    angle = pos * freq  # (L, D/2)
    sin, cos = torch.sin(angle), torch.cos(angle)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class SpanHead(nn.Module):
    """Efficient GlobalPointer: a shared start/end bilinear score plus per-label biases."""

    def __init__(self, in_dim: int, n_labels: int, head_dim: int) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.qk = nn.Linear(in_dim, 2 * head_dim)
        self.bias = nn.Linear(2 * head_dim, 2 * n_labels)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        qk = self.qk(h)
        q, k = rope(qk[..., : self.head_dim]), rope(qk[..., self.head_dim :])
        base = torch.matmul(q, k.transpose(1, 2)) / math.sqrt(self.head_dim)  # (B, L, L)
        bias = self.bias(qk).transpose(1, 2) / 2  # (B, 2C, L)
        logits = base.unsqueeze(1) + bias[:, 0::2].unsqueeze(-1) + bias[:, 1::2].unsqueeze(-2)
        valid = mask.unsqueeze(1) & mask.unsqueeze(2)
        valid = torch.triu(valid.to(torch.int64)).bool()
        return torch.where(valid.unsqueeze(1), logits, torch.full_like(logits, NEG))


class ClassHead(nn.Module):
    """Max + mean pooling over valid positions, then a small MLP."""

    def __init__(self, in_dim: int, n_labels: int, dropout: float) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(2 * in_dim, 256), nn.ReLU(), nn.Dropout(dropout), nn.Linear(256, n_labels)
        )

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).to(h.dtype)
        mx = torch.where(mask.unsqueeze(-1), h, torch.full_like(h, NEG)).max(dim=1).values
        mean = (h * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return self.mlp(torch.cat([mx, mean], dim=-1))


class Net(nn.Module):
    """Encoder + head; the forward signature is the ONNX graph's inputs."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.head: nn.Module
        if cfg.task == "ner":
            self.head = SpanHead(self.encoder.out_dim, cfg.n_labels, cfg.head_dim)
        else:
            self.head = ClassHead(self.encoder.out_dim, cfg.n_labels, cfg.dropout)
        if cfg.wide:
            # A linear model over character and bigram counts, as the n-gram baselines are: it
            # carries the lexical signal the recurrent path overfits on a few thousand reviews.
            self.wide_char = nn.Embedding(cfg.n_chars, cfg.n_labels, padding_idx=0)
            self.wide_bigram = nn.Embedding(cfg.n_bigrams, cfg.n_labels, padding_idx=0)
            nn.init.zeros_(self.wide_char.weight)
            nn.init.zeros_(self.wide_bigram.weight)
        if cfg.linear:
            # Filled after training from a logistic regression over which character n-grams a
            # text contains (see train/linear.py); zero until then, so it changes nothing.
            _add_linear_part(self, cfg)

    def forward(
        self,
        chars: torch.Tensor,
        bigrams: torch.Tensor,
        lexicon: torch.Tensor,
        lengths: torch.Tensor,
        ngrams: torch.Tensor | None = None,
    ) -> torch.Tensor:
        h, mask = self.encoder(chars, bigrams, lexicon, lengths)
        out = self.head(h, mask)
        if self.cfg.wide:
            m = mask.unsqueeze(-1).to(out.dtype)
            bag = (self.wide_char(chars) + self.wide_bigram(bigrams)) * m
            out = out + bag.sum(dim=1) / m.sum(dim=1).clamp(min=1.0).sqrt()
        if self.cfg.linear and ngrams is not None:
            out = out + _linear_logits(self, ngrams)
        return out


def _add_linear_part(module: nn.Module, cfg: NetConfig) -> None:
    """``lin_ngram`` (one weight row per n-gram id) and ``lin_bias``: zero and frozen."""
    module.lin_ngram = nn.Embedding(max(cfg.n_ngrams, 1), cfg.n_labels, padding_idx=0)
    module.lin_bias = nn.Parameter(torch.zeros(cfg.n_labels), requires_grad=False)
    nn.init.zeros_(module.lin_ngram.weight)
    module.lin_ngram.weight.requires_grad_(False)


def _linear_logits(module: nn.Module, ngrams: torch.Tensor) -> torch.Tensor:
    # Id 0 pads and its row is zero, so padding adds nothing.
    return module.lin_ngram(ngrams).sum(dim=1) + module.lin_bias


class Ensemble(nn.Module):
    """Networks trained from different seeds, their logits averaged (plus, for a classifier,
    one linear part).

    On a few thousand sentences each recurrent net lands 1-2 points apart from the next
    depending on its seed; averaging them removes part of that variance. The graph has the same
    inputs and output as one Net, so the runtime serves it unchanged.
    """

    def __init__(self, cfg: NetConfig, members: list[Net]) -> None:
        super().__init__()
        self.cfg = cfg
        self.members = nn.ModuleList(members)
        if cfg.linear:
            _add_linear_part(self, cfg)

    def forward(
        self,
        chars: torch.Tensor,
        bigrams: torch.Tensor,
        lexicon: torch.Tensor,
        lengths: torch.Tensor,
        ngrams: torch.Tensor | None = None,
    ) -> torch.Tensor:
        out = torch.stack([m(chars, bigrams, lexicon, lengths) for m in self.members]).mean(0)
        if self.cfg.linear and ngrams is not None:
            out = out + _linear_logits(self, ngrams)
        return out


# What training exports: one network or an ensemble of them, with the same graph signature.
TrainedNet = Net | Ensemble


def span_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-label categorical cross-entropy (Su, 2020) over each label's span matrix."""
    b, c = logits.shape[:2]
    pred = logits.reshape(b * c, -1)
    gold = target.reshape(b * c, -1)
    pred = (1 - 2 * gold) * pred
    neg = pred - gold * 1e12
    pos = pred - (1 - gold) * 1e12
    zeros = torch.zeros_like(pred[:, :1])
    loss = torch.logsumexp(torch.cat([neg, zeros], -1), -1) + torch.logsumexp(
        torch.cat([pos, zeros], -1), -1
    )
    return loss.mean()
