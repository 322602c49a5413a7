"""Paired CV of the sentiment model's linear part with other feature sets (an experiment, not CI).

NB-weighted logistic regression, as src/nluserve/train/linear.py fits it (liblinear), over binary
presence of: character 1-3-grams (what ships), 1-4-grams, and either plus jieba words and word
bigrams. Features seen in fewer than 2 training texts of a fold are dropped. 5 folds x 3 fold
seeds; prints each set's accuracy and its paired difference to what ships (C 0.1).

    .venv/bin/python scripts/sentiment_features_cv.py [../shared/data/chnsenticorp/train.csv]
"""

from __future__ import annotations

import csv
import logging
import sys
from itertools import pairwise
from pathlib import Path

import jieba
import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from nluserve.runtime.ngrams import ngram_keys
from nluserve.train.linear import nb_ratio

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "chnsenticorp" / "train.csv"


def words(text: str) -> set[str]:
    ws = [w for w in jieba.lcut(text, HMM=False) if w.strip()]
    return {"W:" + w for w in ws} | {"B:" + a + "|" + b for a, b in pairwise(ws)}


def matrix(keysets: list[set[str]], train: np.ndarray) -> csr_matrix:
    counts: dict[str, int] = {}
    for i in train:
        for k in keysets[i]:
            counts[k] = counts.get(k, 0) + 1
    vocab = {k: j for j, k in enumerate(k for k, n in counts.items() if n >= 2)}
    rows, cols = [], []
    for i, keys in enumerate(keysets):
        for k in keys:
            if (j := vocab.get(k)) is not None:
                rows.append(i)
                cols.append(j)
    return csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(keysets), len(vocab)))


def main() -> None:
    jieba.setLogLevel(logging.WARNING)
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    texts = [(r["review"] or "")[:256] for r in rows]  # the model's window
    y = np.array([int(r["label"]) for r in rows])
    c13 = [ngram_keys(t, 3) for t in texts]
    c14 = [ngram_keys(t, 4) for t in texts]
    w = [words(t) for t in texts]
    feature_sets = {
        "char 1-3": c13,
        "char 1-4": c14,
        "char 1-3 + words": [a | b for a, b in zip(c13, w, strict=True)],
        "char 1-4 + words": [a | b for a, b in zip(c14, w, strict=True)],
    }
    acc: dict[tuple[str, float], list[float]] = {}
    for seed in range(3):
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed).split(texts, y):
            for name, keysets in feature_sets.items():
                x = matrix(keysets, train)
                scaled = x.multiply(nb_ratio(x[train], y[train], 1)).tocsr()
                for c in (0.1, 0.3):
                    model = LogisticRegression(C=c, solver="liblinear")
                    model.fit(scaled[train], y[train])
                    right = model.predict(scaled[test]) == y[test]
                    acc.setdefault((name, c), []).append(100 * float(right.mean()))
    base = np.array(acc["char 1-3", 0.1])
    print("| features | C | accuracy | paired difference |\n| --- | --- | --- | --- |")
    for (name, c), scores in acc.items():
        diff = np.array(scores) - base
        spread = diff.std(ddof=1) / np.sqrt(len(diff))
        print(f"| {name} | {c} | {np.mean(scores):.2f} | {diff.mean():+.2f} ± {spread:.2f} |")


if __name__ == "__main__":
    main()
