"""Fit a trained classifier's logit temperature on its own validation split, after the fact.

Models trained before ``temperature`` existed (sentiment 1.2.0) get it without retraining:
the validation split is rebuilt exactly as ``nluserve train`` carved it (the manifest's seed,
the same fraction), T is fitted through the ONNX model (train/temperature.py), and the
manifest is rewritten with the temperature, the validation metrics measured with it, the
calibration numbers and, if given, a new version. A text of one window keeps its prediction;
a text longer than the model's max_length averages its windows' probabilities, so its
prediction can move.

    .venv/bin/python scripts/calibrate_temperature.py src/nluserve/bundled/sentiment \\
        --data ../shared/data/chnsenticorp/train.csv --version 1.2.1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nluserve.models import store
from nluserve.runtime.model import load_model
from nluserve.runtime.results import ClassResult
from nluserve.train import temperature
from nluserve.train.trainer import CachingBackend, evaluate, examples_for, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the file it was trained on")
    parser.add_argument("--val-fraction", type=float, default=0.1)
    parser.add_argument("--version", help="write this version into the manifest")
    args = parser.parse_args()
    manifest = store.read_manifest(args.model_dir)
    if manifest.task != "classification" or manifest.training is None:
        raise SystemExit("needs a classification model with training info in its manifest")
    if store.sha256_file(args.data) != manifest.training.data_sha256:
        raise SystemExit(f"{args.data} is not the file this model was trained on")
    _, examples = examples_for(manifest.task, args.data)
    _, val = split(examples, args.val_fraction, manifest.training.seed)
    if len(val) != manifest.training.n_validation:
        raise SystemExit(f"rebuilt {len(val)} validation examples, the manifest says otherwise")
    model = load_model(args.model_dir)
    model.backend = CachingBackend(model.backend)  # the graph runs once; only the softmax varies
    texts = [e.text for e in val]

    def predict(t: float) -> list[ClassResult]:
        model.manifest = manifest.model_copy(update={"temperature": t})
        return [r for r in model.predict(texts) if isinstance(r, ClassResult)]

    found = temperature.fit(predict, val)
    print(json.dumps(found))
    model.manifest = manifest.model_copy(update={"temperature": found["temperature"]})
    scored = evaluate(model, val)  # long texts average their windows' scores: those may move
    print(json.dumps({k: v for k, v in scored.items() if k != "per_label"}))
    metrics = dict(manifest.metrics)
    metrics["validation"] = {**scored, "calibration": found}
    update: dict[str, object] = {"temperature": found["temperature"], "metrics": metrics}
    if args.version:
        update["version"] = args.version
    store.write_manifest(args.model_dir, manifest.model_copy(update=update))


if __name__ == "__main__":
    main()
