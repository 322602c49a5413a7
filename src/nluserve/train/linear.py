"""A linear model over which character n-grams a text contains, added to the classifier's logits.

On a few thousand reviews a recurrent net overfits long before it extracts all the lexical
signal an n-gram linear model gets, and joint training lets the net's path dominate. So the
linear part is fitted on its own: NB-weighted logistic regression (Wang & Manning 2012, "NBSVM"):
binary presence of character 1–3-grams (runtime/ngrams.py, the features the graph gathers),
each scaled by its naive-Bayes log-count ratio. The scaling folds into the weights, so the graph
only sums one weight row per n-gram.

C is chosen by 5-fold cross-validation on the training part: on a few hundred validation reviews
the candidates differ by less than the split's noise. Only the mixing weight, one number, is
chosen on the validation split, like the epoch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm

from nluserve.data.readers import Example
from nluserve.runtime.ngrams import NgramIndex
from nluserve.train.net import TrainedNet


def features(texts: list[str], ngrams: NgramIndex) -> csr_matrix:
    """Binary n-gram presence, one column per id (column 0, the pad, stays empty)."""
    rows, cols = [], []
    for r, text in enumerate(texts):
        ids = ngrams.encode(text)
        rows.extend([r] * len(ids))
        cols.extend(ids)
    return csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(texts), len(ngrams)), dtype=np.float64
    )


def nb_ratio(x: csr_matrix, y: np.ndarray, positive: int, alpha: float = 1.0) -> np.ndarray:
    """Smoothed log-count ratio of each feature between ``positive`` and the other classes."""
    p = alpha + np.asarray(x[y == positive].sum(axis=0)).ravel()
    q = alpha + np.asarray(x[y != positive].sum(axis=0)).ravel()
    return np.log((p / p.sum()) / (q / q.sum()))


def attach(
    net: TrainedNet,
    ngrams: NgramIndex,
    train: list[Example],
    val: list[Example],
    index: dict[str, int],
    score: Callable[[], float],
    chosen: dict[str, float] | None = None,
) -> dict[str, float]:
    """Fit (C by cross-validation), choose the mixing weight on validation, write into ``net``.

    ``chosen`` (a refit, train/refit.py) gives both C and the mixing weight instead."""
    x_train = features([e.text for e in train], ngrams)
    y_train = np.array([index[e.label or ""] for e in train])
    n_labels = len(index)
    if chosen:
        c, alpha = float(chosen["linear_C"]), float(chosen["mix"])
        weights, bias = _fit(x_train, y_train, _ratios(x_train, y_train, n_labels), n_labels, c)
        _load(net, weights, bias, alpha)
        tqdm.write(f"linear C={c}, mix {alpha:.2f}: as the validated run chose", file=sys.stderr)
        return {"linear_C": c, "mix": alpha}
    x_val = features([e.text for e in val], ngrams)
    y_val = np.array([index[e.label or ""] for e in val])
    best_c, best_cv = 1.0, -1.0
    for c in C_GRID:
        cv = _cross_validate(x_train, y_train, n_labels, c)
        tqdm.write(f"linear C={c}: 5-fold CV accuracy {100 * cv:.2f}", file=sys.stderr)
        if cv > best_cv:
            best_c, best_cv = c, cv
    weights, bias = _fit(x_train, y_train, _ratios(x_train, y_train, n_labels), n_labels, best_c)
    acc = float(((x_val @ weights + bias).argmax(axis=1) == y_val).mean())
    tqdm.write(f"linear C={best_c}: validation accuracy {100 * acc:.2f}", file=sys.stderr)
    best_alpha, best_val = 0.0, score()
    tqdm.write(f"mix 0.00: validation {best_val:.2f}", file=sys.stderr)
    for alpha in MIX_GRID:
        _load(net, weights, bias, alpha)
        val_score = score()
        tqdm.write(f"mix {alpha:.2f}: validation {val_score:.2f}", file=sys.stderr)
        if val_score > best_val:
            best_alpha, best_val = alpha, val_score
    _load(net, weights, bias, best_alpha)
    return {
        "linear_C": best_c,
        "linear_cv_accuracy": round(100 * best_cv, 2),
        "linear_val_accuracy": round(100 * acc, 2),
        "mix": best_alpha,
    }


C_GRID = (0.1, 0.3, 1.0)
# Up to 16: a net trained to near-zero loss gives logits several times the linear model's.
MIX_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def _ratios(x: csr_matrix, y: np.ndarray, n_labels: int) -> list[np.ndarray]:
    """Binary: one ratio (for label 1). More labels: one-vs-rest ratios, one per label."""
    return [nb_ratio(x, y, k) for k in ([1] if n_labels == 2 else range(n_labels))]


def _cross_validate(x: csr_matrix, y: np.ndarray, n_labels: int, c: float) -> float:
    """Mean accuracy over 5 stratified folds, NB ratios refitted inside each fold."""
    accs = []
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
        weights, bias = _fit(x[tr], y[tr], _ratios(x[tr], y[tr], n_labels), n_labels, c)
        accs.append(float(((x[te] @ weights + bias).argmax(axis=1) == y[te]).mean()))
    return float(np.mean(accs))


def _fit(
    x: csr_matrix, y: np.ndarray, ratios: list[np.ndarray], n_labels: int, c: float
) -> tuple[np.ndarray, np.ndarray]:
    """Logit weights (n-grams × labels) and bias, with the NB scaling folded into the weights."""
    weights = np.zeros((x.shape[1], n_labels))
    bias = np.zeros(n_labels)
    if n_labels == 2:
        # Binary logistic regression gives one row for label 1; as logits that is [0, w].
        model = LogisticRegression(C=c, solver="liblinear").fit(x.multiply(ratios[0]).tocsr(), y)
        weights[:, 1] = model.coef_[0] * ratios[0]
        bias[1] = model.intercept_[0]
        return weights, bias
    for k, r in enumerate(ratios):
        model = LogisticRegression(C=c, solver="liblinear").fit(x.multiply(r).tocsr(), y == k)
        weights[:, k] = model.coef_[0] * r
        bias[k] = model.intercept_[0]
    return weights, bias


def _load(net: TrainedNet, weights: np.ndarray, bias: np.ndarray, alpha: float) -> None:
    with torch.no_grad():
        net.lin_ngram.weight.copy_(torch.from_numpy(alpha * weights).float())
        net.lin_bias.copy_(torch.from_numpy(alpha * bias).float())
