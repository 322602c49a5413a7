"""Two models on the same validation split: each one's score and a paired bootstrap of the gap.

The split is the trainer's (seeded 10 % of the training file), so both models must have been
trained with that seed and fraction. Resampling validation sentences (not entities or reviews
separately) keeps the two models' answers paired.

    .venv/bin/python scripts/compare_models.py ner ../shared/data/cluener/train.jsonl general NEW_DIR
    .venv/bin/python scripts/compare_models.py classification \\
        ../shared/data/chnsenticorp/train.csv sentiment NEW_DIR
    # several seeded splits, each its own pair of runs: the gap averaged over them
    .venv/bin/python scripts/compare_models.py ner DATA BASE13 NEW13 --also 14:BASE14:NEW14
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from nluserve import load_model
from nluserve.runtime.results import ClassResult, NerResult
from nluserve.train.trainer import examples_for, split


def per_item(task: str, ref: str, texts: list[str], golds: list[object]) -> np.ndarray:
    """Per validation item: (true positives, predicted, gold) for NER, (right, 1, 1) otherwise."""
    rows = []
    model = load_model(ref, threads=2)
    if "refit" in model.manifest.metrics:
        print(f"warning: {ref} is a refit that trained on these records; its number is a fit")
    for gold, pred in zip(golds, model.predict(texts), strict=True):
        if task == "ner":
            assert isinstance(pred, NerResult) and isinstance(gold, set)
            found = {(e.start, e.end, e.label) for e in pred.entities}
            rows.append((len(found & gold), len(found), len(gold)))
        else:
            assert isinstance(pred, ClassResult)
            rows.append((int(pred.label == gold), 1, 1))
    return np.array(rows)


def score(task: str, counts: np.ndarray) -> float:
    tp, predicted, gold = counts.sum(axis=0)
    return float(200 * tp / (predicted + gold) if task == "ner" else 100 * tp / gold)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("task", choices=("ner", "classification"))
    parser.add_argument("data", type=Path)
    parser.add_argument("base")
    parser.add_argument("new")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=13, help="the trainer's split seed")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="SEED:BASE:NEW",
        help="another seeded split's pair; the gap is then averaged over all the splits, "
        "and each resample draws every split's items anew",
    )
    args = parser.parse_args()
    _, examples = examples_for(args.task, args.data)
    metric = "F1" if args.task == "ner" else "accuracy"
    pairs = [(args.seed, args.base, args.new)]
    for extra in args.also:
        seed, base, new = extra.split(":", 2)
        pairs.append((int(seed), base, new))
    counts = []  # per split: (base rows, new rows)
    for seed, base, new in pairs:
        _, val = split(examples, 0.1, seed)
        texts = [e.text for e in val]
        golds: list[object] = [
            {(s.start, s.end, s.label) for s in e.spans} if args.task == "ner" else e.label
            for e in val
        ]
        a, b = per_item(args.task, base, texts, golds), per_item(args.task, new, texts, golds)
        counts.append((a, b))
        print(
            f"seed {seed}: {len(val)} validation items; {metric}: base {score(args.task, a):.2f}, "
            f"new {score(args.task, b):.2f}"
        )
    rng = np.random.default_rng(0)
    gaps = []
    for _ in range(args.resamples):
        gap = 0.0
        for a, b in counts:
            pick = rng.integers(0, len(a), len(a))
            gap += score(args.task, b[pick]) - score(args.task, a[pick])
        gaps.append(gap / len(counts))
    low, high = np.percentile(gaps, [2.5, 97.5])
    over = f", mean over {len(counts)} splits" if len(counts) > 1 else ""
    print(
        f"paired bootstrap ({args.resamples} resamples{over}): new - base {np.mean(gaps):+.2f}, "
        f"95 % interval [{low:+.2f}, {high:+.2f}], share <= 0: {np.mean(np.array(gaps) <= 0):.3f}"
    )


if __name__ == "__main__":
    main()
