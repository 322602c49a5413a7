"""The sentiment model's linear part against its neighbours: paired 5-fold cross-validation.

Every variant is a logistic regression over binary character 1-3-gram presence that folds into
the graph's one weight row per n-gram (train/linear.py), so any winner could ship without a
runtime change. Each is scored on the same folds as the shipped setting (NB-weighted, C 0.1,
NB smoothing 1, n-grams kept from at least 2 training texts) and the paired difference printed.

    .venv/bin/python scripts/sentiment_linear_variants.py ../shared/data/chnsenticorp/train.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from nluserve.runtime.ngrams import NgramIndex
from nluserve.train.linear import features, nb_ratio
from nluserve.train.trainer import binary_reviews

# name: (n-gram min count, C, scaling: "nb" with this smoothing, "binary" or "idf")
SINGLE = {
    "shipped: nb, C 0.1": (2, 0.1, ("nb", 1.0)),
    "C 0.05": (2, 0.05, ("nb", 1.0)),
    "C 0.2": (2, 0.2, ("nb", 1.0)),
    "nb smoothing 0.25": (2, 0.1, ("nb", 0.25)),
    "nb smoothing 0.5": (2, 0.1, ("nb", 0.5)),
    "nb smoothing 2": (2, 0.1, ("nb", 2.0)),
    "min count 1": (1, 0.1, ("nb", 1.0)),
    "min count 3": (3, 0.1, ("nb", 1.0)),
    "binary, C 0.1": (2, 0.1, ("binary", 0.0)),
    "binary, C 1": (2, 1.0, ("binary", 0.0)),
    "idf, C 0.1": (2, 0.1, ("idf", 0.0)),
    "idf, C 0.3": (2, 0.3, ("idf", 0.0)),
}
# Averaged logits of two models still fold into one weight row.
AVERAGES = [("shipped: nb, C 0.1", "binary, C 1"), ("shipped: nb, C 0.1", "idf, C 0.1")]


def scaling(x: csr_matrix, y: np.ndarray, kind: str, smoothing: float) -> np.ndarray:
    if kind == "nb":
        return nb_ratio(x, y, 1, smoothing)
    if kind == "idf":
        df = np.asarray((x > 0).sum(axis=0)).ravel()
        return np.log((1 + x.shape[0]) / (1 + df)) + 1
    return np.ones(x.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--repeats", type=int, default=2, help="fold seeds")
    args = parser.parse_args()
    texts, y = binary_reviews(args.data)
    names = [*SINGLE, *(f"average of {a} and {b}" for a, b in AVERAGES)]
    acc: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(args.repeats):
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=rep).split(texts, y):
            matrices = {}
            logits = {}
            for name, (min_count, c, (kind, smoothing)) in SINGLE.items():
                if min_count not in matrices:
                    index = NgramIndex.build((texts[i] for i in tr), min_count=min_count)
                    matrices[min_count] = (
                        features([texts[i] for i in tr], index),
                        features([texts[i] for i in te], index),
                    )
                x, x_test = matrices[min_count]
                scale = scaling(x, y[tr], kind, smoothing)
                model = LogisticRegression(C=c, solver="liblinear")
                model.fit(x.multiply(scale).tocsr(), y[tr])
                logits[name] = x_test @ (model.coef_[0] * scale) + model.intercept_[0]
            for a, b in AVERAGES:
                logits[f"average of {a} and {b}"] = (logits[a] + logits[b]) / 2
            for name in names:
                acc[name].append(100 * float(((logits[name] > 0) == y[te]).mean()))
    base = np.array(acc[names[0]])
    print("| variant | accuracy | paired difference |\n| --- | --- | --- |")
    for name in names:
        diff = np.array(acc[name]) - base
        spread = diff.std(ddof=1) / np.sqrt(len(diff))
        print(f"| {name} | {np.mean(acc[name]):.2f} | {diff.mean():+.2f} ± {spread:.2f} |")


if __name__ == "__main__":
    main()
