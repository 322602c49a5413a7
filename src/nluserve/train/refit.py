"""Refit: the validated recipe trained again on every record, validation sentences included.

A validated run spends 10 % of a small corpus on choosing things (the epochs to average, the span
threshold or logit temperature, the linear part's C and mixing weight). Once they are chosen,
holding those records out of the shipped weights only costs data (on ChnSentiCorp the linear
part gains about a point per doubling, scripts/linear_learning_curve.py; on CMeEE the tenth
before the last was worth 1.6 F1, docs/models.md). So a refit takes every choice from the
validated run's model directory instead of making it again:

- the number of epochs and the weight-averaging window;
- the step-size schedule: the validated run halved the step size when its validation score
  stalled, and those scores (its ``history.json``) are replayed so the refit halves it at the
  same epochs;
- the span threshold (NER) or logit temperature (classification);
- the linear part's C and mixing weight.

The shipped manifest keeps the validated run's numbers as its validation numbers, says which run
they belong to, and records that these weights saw the validation sentences.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, fields
from pathlib import Path

from nluserve.models.manifest import Manifest, TrainingInfo
from nluserve.models.store import read_manifest
from nluserve.train.net import NetConfig


class RefitError(ValueError):
    """The reference directory cannot be refitted (what is missing is in the message)."""


@dataclass(frozen=True)
class Reference:
    """What a refit takes from a validated model directory."""

    path: Path
    manifest: Manifest
    epochs: dict[int, list[float]]  # seed -> validation score of each epoch, in order
    swa_from: int
    linear: dict[str, float]  # {"linear_C": ..., "mix": ...} when the run had a linear part
    net: dict[str, object]  # its net_config.json: the network's shape and regularisation

    @property
    def validation(self) -> dict[str, object]:
        return self.manifest.metrics.get("validation", {})

    def schedule(self, seed: int) -> list[float]:
        """The validation scores that drove the step-size schedule of this seed's network."""
        if seed not in self.epochs:
            raise RefitError(f"the validated run trained no network with seed {seed}")
        return self.epochs[seed]

    def former_split(self, n_records: int) -> tuple[float, int]:
        """(fraction, seed) that reproduce the validated run's split of ``n_records`` records."""
        training = self.manifest.training
        assert training is not None and training.n_validation  # load_reference checked
        return training.n_validation / n_records, training.seed or 0


_AVERAGED = re.compile(r"weights averaged over epochs (\d+)-(\d+) of (\d+)")
_LINEAR = re.compile(r"linear part (\{[^}]*\})")


def load_reference(path: Path) -> Reference:
    """Read a validated run's directory; refuse one whose choices cannot be replayed."""
    if not (path / "manifest.json").is_file():
        raise RefitError(f"{path} is not a model directory (no manifest.json)")
    manifest = read_manifest(path)
    training = manifest.training
    if training is None or not training.n_validation or "validation" not in manifest.metrics:
        raise RefitError(f"{path} has no validated training run to refit")
    if "never trained on" not in (training.notes or ""):
        raise RefitError(f"{path} is itself a refit; refit from the validated run")
    averaged = _AVERAGED.search(training.notes or "")
    if averaged is None:
        # A best-epoch run chose its epoch on validation; without weight averaging there is no
        # fixed endpoint to train to.
        raise RefitError(f"{path} was not trained with --swa-from; only such runs can be refitted")
    history_file = path / "history.json"
    if not history_file.is_file():
        raise RefitError(f"{path} has no history.json to replay the step-size schedule from")
    epochs: dict[int, list[float]] = {}
    for row in json.loads(history_file.read_text(encoding="utf-8")):
        seed = int(row.get("seed", training.seed or 0))
        epochs.setdefault(seed, []).append(float(row["val"]))
    linear = _LINEAR.search(training.notes or "")
    return Reference(
        path=path,
        manifest=manifest,
        epochs=epochs,
        swa_from=int(averaged.group(1)),
        linear=ast.literal_eval(linear.group(1)) if linear else {},
        net=json.loads(net_file.read_text("utf-8"))
        if (net_file := path / "net_config.json").is_file()
        else {},
    )


# Sizes that follow from the data (vocabularies, n-gram index) may differ; the recipe may not.
_DATA_SIZED = {"n_chars", "n_bigrams", "n_ngrams", "n_labels"}


def check_network(reference: Reference, built: dict[str, object]) -> None:
    """Refuse a refit whose network differs from the validated run's (say, another --hidden)."""
    # A key the reference's file lacks is one added since: it had that field's default.
    ref = {f.name: f.default for f in fields(NetConfig)} | reference.net
    differ = sorted(k for k, v in built.items() if k not in _DATA_SIZED and ref.get(k, v) != v)
    if differ:
        wanted = ", ".join(f"{k} {ref[k]!r} (not {built[k]!r})" for k in differ)
        raise RefitError(f"{reference.path} trained another network: {wanted}")


# Training choices that are not the network's shape but change what it learns; the validated
# run's command line is where they are recorded.
_RECIPE_OPTIONS = {
    "--augment": "augment",
    "--adversarial": "adversarial",
    "--char-dropout": "char_dropout",
    "--lr": "lr",
    "--max-length": "max_length",
}
_RECIPE_FLAGS = {
    "--nested": "nested",
    "--augment-fresh": "augment_fresh",
    "--augment-nested": "augment_nested",
}
# Repeatable LABEL=VALUE options, gathered into a tuple of pairs in their order.
_RECIPE_PAIRS = {"--augment-kind": "augment_kinds"}
# The TrainConfig fields a refit must share with its validated run.
RECIPE_FIELDS = (*_RECIPE_OPTIONS.values(), *_RECIPE_FLAGS.values(), *_RECIPE_PAIRS.values())


def recipe_of(command: str, defaults: dict[str, object]) -> dict[str, object]:
    """The recipe options a ``nluserve train`` command line gave, ``defaults`` for the rest."""
    found = dict(defaults)
    pairs: dict[str, list[tuple[str, str]]] = {}
    argv = shlex.split(command)
    for i, arg in enumerate(argv):
        name, equals, inline = arg.partition("=")
        raw = inline if equals else (argv[i + 1] if i + 1 < len(argv) else "")
        if name in _RECIPE_OPTIONS:
            key = _RECIPE_OPTIONS[name]
            found[key] = type(defaults[key])(raw)
        elif name in _RECIPE_PAIRS:
            label, _, value = raw.partition("=")
            pairs.setdefault(_RECIPE_PAIRS[name], []).append((label, value))
        elif arg in _RECIPE_FLAGS:
            found[_RECIPE_FLAGS[arg]] = True
        elif arg.startswith("--no-") and f"--{arg[5:]}" in _RECIPE_FLAGS:
            found[_RECIPE_FLAGS[f"--{arg[5:]}"]] = False
    return found | {key: tuple(given) for key, given in pairs.items()}


def check_recipe(
    reference: Reference, chosen: dict[str, object], defaults: dict[str, object]
) -> None:
    """Refuse a refit trained otherwise than the validated run (say, another --augment).

    An option the validated command did not give had its default then (``defaults``)."""
    training = reference.manifest.training
    assert training is not None  # load_reference checked
    try:
        ref = recipe_of(training.command or "", defaults)
    except ValueError as exc:
        raise RefitError(f"{reference.path}: cannot read its training command: {exc}") from exc
    differ = sorted(k for k, v in chosen.items() if ref[k] != v)
    if differ:
        wanted = ", ".join(f"{k} {ref[k]!r} (not {chosen[k]!r})" for k in differ)
        raise RefitError(f"{reference.path} was trained with another recipe: {wanted}")


def note(reference: Reference, n_records: int) -> str:
    """The manifest's training note for a refit."""
    training = reference.manifest.training
    assert training is not None
    return (
        f"refit on all {n_records} records with every choice of the validated run "
        f"{reference.manifest.name} {reference.manifest.version} ({training.n_train} training / "
        f"{training.n_validation} validation records, seed {training.seed}): its epochs, "
        "step-size schedule, "
        + ("linear part C and mix, " if reference.linear else "")
        + ("span threshold" if reference.manifest.task == "ner" else "temperature")
        + "; the validation numbers are that run's, and these weights also saw its validation "
        "records"
    )


def refit_manifest(
    manifest: Manifest,
    reference: Reference,
    n_records: int,
    training: dict[str, object],
    former_validation_fit: dict[str, object],
) -> Manifest:
    """The shipped manifest: the reference's calibration and validation numbers, the refit's
    provenance, and how the refit scores on the records it no longer holds out."""
    ref = reference.manifest
    assert ref.training is not None
    info = TrainingInfo.model_validate(
        training | {"n_train": n_records, "n_validation": 0, "notes": note(reference, n_records)}
    )
    return manifest.model_copy(
        update={
            "threshold": ref.threshold,
            "temperature": ref.temperature,
            "training": info,
            "metrics": {
                "validation": reference.validation,
                "refit": {
                    "validated_version": ref.version,
                    "validated_command": ref.training.command,
                    "validated_notes": ref.training.notes,
                    "validated_n_train": ref.training.n_train,
                    "validated_n_validation": ref.training.n_validation,
                    # Seen in training, so this is a fit, not a score: a refit that learned
                    # nothing would show it.
                    "former_validation_fit": former_validation_fit,
                },
            },
        }
    )
