"""What more reviews are worth to the sentiment model's linear part: a paired learning curve.

5-fold cross-validation on the whole CSV, repeated with three fold seeds. In each fold the
training part is shuffled once and the NB-weighted char 1-3-gram logistic regression
(train/linear.py, C 0.1 as the shipped models choose) is fitted on growing prefixes of it, so
each step's gain is measured on the same test reviews (paired): the evidence behind refitting
on every record (train/refit.py).

    .venv/bin/python scripts/linear_learning_curve.py ../shared/data/chnsenticorp/train.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold

from nluserve.runtime.ngrams import NgramIndex
from nluserve.train.linear import _fit, _ratios, features
from nluserve.train.trainer import examples_for

SHARES = (0.6, 0.7, 0.8, 0.9, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--max-length", type=int, default=256, help="as the shipped model")
    parser.add_argument("--c", type=float, default=0.1)
    args = parser.parse_args()
    _, examples = examples_for("classification", args.data)
    texts = [e.text[: args.max_length] for e in examples]
    y = np.array([int(e.label == "positive") for e in examples])
    acc = np.zeros((15, len(SHARES)))
    sizes = np.zeros(len(SHARES))
    folds = (
        (rep, tr, te)
        for rep in range(3)
        for tr, te in StratifiedKFold(5, shuffle=True, random_state=rep).split(texts, y)
    )
    for row, (rep, tr, te) in enumerate(folds):
        order = np.random.default_rng(rep).permutation(tr)
        for col, share in enumerate(SHARES):
            sub = order[: round(len(tr) * share)]
            sizes[col] = len(sub)
            ngrams = NgramIndex.build(texts[i] for i in sub)
            x = features([texts[i] for i in sub], ngrams)
            x_test = features([texts[i] for i in te], ngrams)
            weights, bias = _fit(x, y[sub], _ratios(x, y[sub], 2), 2, args.c)
            acc[row, col] = 100 * float(((x_test @ weights + bias).argmax(1) == y[te]).mean())
    print("| training reviews | accuracy (mean of 15 folds) | gain over the previous step |")
    print("| --- | --- | --- |")
    for col in range(len(SHARES)):
        gain = ""
        if col:
            diff = acc[:, col] - acc[:, col - 1]
            gain = f"{diff.mean():+.2f} ± {diff.std(ddof=1) / np.sqrt(len(diff)):.2f}"
        print(f"| {int(sizes[col])} | {acc[:, col].mean():.2f} | {gain} |")
    slope = np.polyfit(np.log(sizes), acc.mean(axis=0), 1)[0]
    print(
        f"\nper doubling of the data: {slope * np.log(2):+.2f} points (least squares on log size)"
    )


if __name__ == "__main__":
    main()
