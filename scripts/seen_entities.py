"""Where a NER model's validation errors are: entities its training split had, and the others.

Splits the gold entities of the trainer's validation split by whether the same text with the
same type is an entity in the training part ("seen"), is one there with another type only, or
is not ("unseen"), and prints the model's recall on each, and its precision on the entities it
predicts, split the same way. A model that already recalls the seen entities well has little to
gain from a dictionary of training entities; its misses are the unseen ones.

    .venv/bin/python scripts/seen_entities.py ../shared/data/cluener/train.jsonl /tmp/validated/general
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from nluserve import load_model
from nluserve.runtime.results import NerResult
from nluserve.train.trainer import examples_for, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("model", help="a validated run's directory (not a refit)")
    parser.add_argument("--seed", type=int, default=13, help="the trainer's split seed")
    args = parser.parse_args()
    _, examples = examples_for("ner", args.data)
    train, val = split(examples, 0.1, args.seed)
    typed = {(e.text[s.start : s.end], s.label) for e in train for s in e.spans}
    untyped = {text for text, _ in typed}
    model = load_model(args.model, threads=2)
    if "refit" in model.manifest.metrics:
        print(f"warning: {args.model} is a refit that trained on these records")
    n: Counter[tuple[str, str]] = Counter()
    for example, result in zip(val, model.predict([e.text for e in val]), strict=True):
        assert isinstance(result, NerResult)
        found = {(p.start, p.end, p.label) for p in result.entities}
        gold = {(s.start, s.end, s.label) for s in example.spans}
        for start, end, label in gold:
            text = example.text[start:end]
            kind = (
                "seen" if (text, label) in typed else "other type" if text in untyped else "unseen"
            )
            n[kind, "gold"] += 1
            n[kind, "recalled"] += (start, end, label) in found
        for start, end, label in found:
            kind = "seen" if (example.text[start:end], label) in typed else "unseen"
            n[kind, "predicted"] += 1
            n[kind, "right"] += (start, end, label) in gold
    print("| gold entities | count | recall |\n| --- | --- | --- |")
    for kind in ("seen", "other type", "unseen"):
        share = 100 * n[kind, "recalled"] / max(1, n[kind, "gold"])
        print(f"| {kind} in training | {n[kind, 'gold']} | {share:.1f} |")
    print("\n| predicted entities | count | precision |\n| --- | --- | --- |")
    for kind in ("seen", "unseen"):
        share = 100 * n[kind, "right"] / max(1, n[kind, "predicted"])
        print(f"| {kind} in training | {n[kind, 'predicted']} | {share:.1f} |")


if __name__ == "__main__":
    main()
