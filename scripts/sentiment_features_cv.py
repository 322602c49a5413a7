"""5-fold CV of the sentiment model's linear part with other feature sets (an experiment, not CI).

NB-weighted logistic regression, as src/nluserve/train/linear.py fits it, over binary presence of:
character 1-3-grams (what ships), 1-4-grams, and either plus jieba words and word bigrams.
Features seen in fewer than 2 training texts of a fold are dropped. Prints mean ± std accuracy.

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
    texts = [r["review"] or "" for r in rows]
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
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(texts, y))
    for name, keysets in feature_sets.items():
        for c in (0.3, 1.0):
            accs = []
            for train, test in folds:
                x = matrix(keysets, train)
                scaled = x.multiply(nb_ratio(x[train], y[train], 1)).tocsr()
                model = LogisticRegression(C=c, max_iter=5000).fit(scaled[train], y[train])
                accs.append(float((model.predict(scaled[test]) == y[test]).mean()))
            print(f"{name} C={c}: {100 * np.mean(accs):.2f} ± {100 * np.std(accs):.2f}", flush=True)


if __name__ == "__main__":
    main()
