"""A linear model over the classifier's own bag-of-(char, bigram) inputs, added to its logits.

On a few thousand reviews a recurrent net overfits long before it extracts all the lexical
signal an n-gram linear model gets, and joint training lets the net's path dominate. So the
linear part is fitted on its own (scikit-learn logistic regression, features exactly as the
graph computes them: counts / sqrt(length) over char and bigram ids) and mixed in with a
weight chosen on the validation split, like the epoch and C.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from tqdm import tqdm

from nluserve.data.readers import Example
from nluserve.runtime.tokenizer import Vocab
from nluserve.train.net import Net


def features(texts: list[str], vocab: Vocab, max_length: int) -> csr_matrix:
    n_chars = len(vocab.chars)
    rows, cols, vals = [], [], []
    for r, text in enumerate(texts):
        chars, bigrams = vocab.encode(text[:max_length])
        scale = 1.0 / max(1.0, float(len(chars))) ** 0.5
        for c in chars:
            rows.append(r), cols.append(c), vals.append(scale)
        for b in bigrams:
            rows.append(r), cols.append(n_chars + b), vals.append(scale)
    return csr_matrix((vals, (rows, cols)), shape=(len(texts), n_chars + len(vocab.bigrams)))


def attach(
    net: Net,
    vocab: Vocab,
    train: list[Example],
    val: list[Example],
    index: dict[str, int],
    max_length: int,
    score: Callable[[], float],
) -> dict[str, float]:
    """Fit, choose C and the mixing weight on validation, write the weights into ``net``."""
    x_train = features([e.text for e in train], vocab, max_length)
    x_val = features([e.text for e in val], vocab, max_length)
    y_train = np.array([index[e.label or ""] for e in train])
    y_val = np.array([index[e.label or ""] for e in val])
    best_c, best_acc, best_model = 0.0, -1.0, None
    for c in (1.0, 3.0, 10.0, 30.0):
        model = LogisticRegression(C=c, max_iter=5000).fit(x_train, y_train)
        acc = float((model.predict(x_val) == y_val).mean())
        tqdm.write(f"linear C={c}: validation accuracy {100 * acc:.2f}", file=sys.stderr)
        if acc > best_acc:
            best_c, best_acc, best_model = c, acc, model
    assert best_model is not None
    coef = best_model.coef_
    # Binary logistic regression gives one row for class 1; as logits that is [0, w].
    weights = np.vstack([np.zeros_like(coef[0]), coef[0]]).T if coef.shape[0] == 1 else coef.T
    bias = (
        np.array([0.0, best_model.intercept_[0]]) if coef.shape[0] == 1 else best_model.intercept_
    )
    n_chars = len(vocab.chars)
    best_alpha, best_val = 0.0, score()
    tqdm.write(f"mix 0.00: validation {best_val:.2f}", file=sys.stderr)
    for alpha in (0.25, 0.5, 1.0, 2.0, 4.0):
        _load(net, weights, bias, n_chars, alpha)
        val_score = score()
        tqdm.write(f"mix {alpha:.2f}: validation {val_score:.2f}", file=sys.stderr)
        if val_score > best_val:
            best_alpha, best_val = alpha, val_score
    _load(net, weights, bias, n_chars, best_alpha)
    return {"linear_C": best_c, "linear_val_accuracy": round(100 * best_acc, 2), "mix": best_alpha}


def _load(net: Net, weights: np.ndarray, bias: np.ndarray, n_chars: int, alpha: float) -> None:
    with torch.no_grad():
        net.lin_char.weight.copy_(torch.from_numpy(alpha * weights[:n_chars]).float())
        net.lin_bigram.weight.copy_(torch.from_numpy(alpha * weights[n_chars:]).float())
        net.lin_bias.copy_(torch.from_numpy(alpha * bias).float())
