"""Recall on nested vs. top-level gold entities of a nested NER model on our validation split.

Usage: uv run python scripts/nested_eval.py medical ../shared/data/cmeee/train.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from nluserve import load_model
from nluserve.data.readers import read_examples
from nluserve.runtime.results import NerResult


def main(model_name: str, data: str, seed: int = 13, fraction: float = 0.1) -> None:
    import random

    _, examples = read_examples(Path(data))
    idx = list(range(len(examples)))
    random.Random(seed).shuffle(idx)
    val = [examples[i] for i in sorted(idx[: round(len(idx) * fraction)])]  # trainer.split's rule
    model = load_model(model_name)
    if "refit" in model.manifest.metrics:
        print(f"warning: {model_name} is a refit that trained on these records; recall is a fit")
    preds = model.predict([e.text for e in val])
    counts = {"nested": [0, 0], "outer": [0, 0]}
    for ex, res in zip(val, preds, strict=True):
        assert isinstance(res, NerResult)
        found = {(e.start, e.end, e.label) for e in res.entities}
        for g in ex.spans:
            inside = any(
                o is not g
                and o.start <= g.start
                and g.end <= o.end
                and (o.start, o.end) != (g.start, g.end)
                for o in ex.spans
            )
            kind = "nested" if inside else "outer"
            counts[kind][0] += (g.start, g.end, g.label) in found
            counts[kind][1] += 1
    for kind, (hit, total) in counts.items():
        print(f"{kind}: {hit}/{total} recalled ({100 * hit / max(total, 1):.1f}%)")
    predicted_nested = sum(
        1
        for r in preds
        if isinstance(r, NerResult)
        for e in r.entities
        for o in r.entities
        if o is not e
        and o.start <= e.start
        and e.end <= o.end
        and (o.start, o.end) != (e.start, e.end)
    )
    print(f"predicted entities nested inside another predicted entity: {predicted_nested}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
