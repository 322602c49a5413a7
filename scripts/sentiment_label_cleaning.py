"""Does dropping or flipping suspect training labels help the sentiment model's linear part?

ChnSentiCorp has reviews whose label contradicts their text. Confident learning (Northcutt et
al. 2021) finds them from out-of-fold probabilities: a training review whose given label gets
less than T is dropped (or its label flipped) before the model is fitted again. Paired 5-fold
cross-validation on all of ``train.csv``: the suspects are found by an inner 5-fold split of
each outer training part only, and every variant is scored on the same untouched outer fold as
the shipped setting (NB-weighted char 1-3-grams, C 0.1, n-grams from at least 2 texts).

    .venv/bin/python scripts/sentiment_label_cleaning.py ../shared/data/chnsenticorp/train.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from nluserve.runtime.ngrams import NgramIndex
from nluserve.train.linear import features, nb_ratio
from nluserve.train.trainer import binary_reviews

THRESHOLDS = (0.05, 0.1, 0.2, 0.3)


def logits(train: list[str], y: np.ndarray, test: list[str]) -> np.ndarray:
    """The shipped linear part fitted on ``train``, scored on ``test``."""
    index = NgramIndex.build(train, min_count=2)
    x = features(train, index)
    scale = nb_ratio(x, y, 1, 1.0)
    model = LogisticRegression(C=0.1, solver="liblinear").fit(x.multiply(scale).tocsr(), y)
    return np.asarray(features(test, index) @ (model.coef_[0] * scale) + model.intercept_[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--repeats", type=int, default=2, help="fold seeds")
    args = parser.parse_args()
    texts, y = binary_reviews(args.data)
    names = ["shipped", *(f"{how} below {t}" for how in ("drop", "flip") for t in THRESHOLDS)]
    acc: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(args.repeats):
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=rep).split(texts, y):
            train, y_train, test = [texts[i] for i in tr], y[tr], [texts[i] for i in te]
            oof = np.zeros(len(tr))
            inner = StratifiedKFold(5, shuffle=True, random_state=100 + rep)
            for a, b in inner.split(train, y_train):
                oof[b] = logits([train[i] for i in a], y_train[a], [train[i] for i in b])
            p_positive = 1 / (1 + np.exp(-oof))
            p_given = np.where(y_train == 1, p_positive, 1 - p_positive)

            everyone = np.ones(len(tr), dtype=bool)
            variants = {"shipped": (everyone, y_train)}
            for t in THRESHOLDS:
                suspect = p_given < t
                variants[f"drop below {t}"] = (~suspect, y_train)
                variants[f"flip below {t}"] = (everyone, y_train ^ suspect)
            for name, (keep, labels) in variants.items():
                kept = [train[i] for i in np.flatnonzero(keep)]
                got = logits(kept, labels[keep], test) > 0
                acc[name].append(100 * float((got == y[te]).mean()))
    base = np.array(acc["shipped"])
    print("| variant | accuracy | paired difference |\n| --- | --- | --- |")
    for name in names:
        diff = np.array(acc[name]) - base
        spread = diff.std(ddof=1) / np.sqrt(len(diff)) if diff.any() else 0.0
        print(f"| {name} | {np.mean(acc[name]):.2f} | {diff.mean():+.2f} ± {spread:.2f} |")


if __name__ == "__main__":
    main()
