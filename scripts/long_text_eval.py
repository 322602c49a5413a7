"""An NER model on long texts: validation sentences joined k at a time, at several windows.

The validation split is the trainer's (seeded 10 % of the training file). Joining consecutive
sentences makes texts longer than any the corpus holds, with gold offsets shifted to match, so
what a window length does to long input is measured on sentences the model never trained on.

    uv run python scripts/long_text_eval.py ../shared/data/cluener/train.jsonl \\
        /tmp/validated/general --join 1,3,5 --windows 128,50
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nluserve import load_model
from nluserve.data.readers import Example
from nluserve.runtime.model import Model
from nluserve.runtime.results import NerResult
from nluserve.train.trainer import examples_for, split


def joined(val: list[Example], k: int) -> tuple[list[str], list[set[tuple[int, int, str]]]]:
    """Consecutive groups of k sentences as one text each, with their gold spans shifted."""
    texts, golds = [], []
    for first in range(0, len(val) - k + 1, k):
        text, gold = "", set()
        for ex in val[first : first + k]:
            gold |= {(s.start + len(text), s.end + len(text), s.label) for s in ex.spans}
            text += ex.text
        texts.append(text)
        golds.append(gold)
    return texts, golds


def f1(model: Model, texts: list[str], golds: list[set[tuple[int, int, str]]]) -> float:
    tp = predicted = gold_count = 0
    for gold, res in zip(golds, model.predict(texts), strict=True):
        assert isinstance(res, NerResult)
        found = {(e.start, e.end, e.label) for e in res.entities}
        tp, predicted, gold_count = (
            tp + len(found & gold),
            predicted + len(found),
            gold_count + len(gold),
        )
    return 200 * tp / (predicted + gold_count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("model")
    parser.add_argument("--seed", type=int, default=13, help="the trainer's split seed")
    parser.add_argument("--join", default="1,3,5", help="sentences per text, comma-separated")
    parser.add_argument("--windows", default="128,50", help="window lengths, comma-separated")
    args = parser.parse_args()
    _, examples = examples_for("ner", args.data)
    _, val = split(examples, 0.1, args.seed)
    base = load_model(args.model, threads=2)
    if "refit" in base.manifest.metrics:
        print(f"warning: {args.model} is a refit that trained on these records; its F1 is a fit")
    print(f"{args.model}: serves windows of {base.manifest.max_length}")
    for k in (int(x) for x in args.join.split(",")):
        texts, golds = joined(val, k)
        mean = sum(map(len, texts)) / len(texts)
        scores = []
        for width in (int(x) for x in args.windows.split(",")):
            manifest = base.manifest.model_copy(update={"max_length": width})
            model = Model(manifest, base.backend, base.encoder, decoder=base.decoder)
            scores.append(f"window {width}: {f1(model, texts, golds):.2f}")
        print(f"{k} joined ({mean:.0f} characters on average): " + ", ".join(scores))


if __name__ == "__main__":
    main()
