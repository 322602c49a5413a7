"""Refit: a validated run trained again on every record, with every choice the run made."""

from __future__ import annotations

import ast
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nluserve import load_model
from nluserve.models import store
from nluserve.runtime.results import ClassResult, NerResult
from nluserve.train.trainer import examples_for, split
from tests.conftest import write_cluener
from tests.integration.test_training import train

# One character no other review has, per review: which of them a vocabulary holds shows which
# reviews its model was trained on.
MARK = 0x9F00


def _reviews(path: Path) -> Path:
    rows = [("1", f"房间干净，服务周到{chr(MARK + i)}") for i in range(20)]
    rows += [("0", f"卫生很差，太吵了{chr(MARK + 20 + i)}") for i in range(20)]
    with path.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([("label", "review"), *rows])
    return path


RECIPE = ("--epochs", "4", "--swa-from", "3", "--hidden", "16", "--no-lexicon", "--threads", "1")


def _history(path: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads((path / "history.json").read_text("utf-8"))
    return rows


def test_refit_trains_on_every_record_with_the_validated_runs_choices(tmp_path: Path) -> None:
    data = _reviews(tmp_path / "reviews.csv")
    validated, refit = tmp_path / "validated", tmp_path / "refit"
    common = ("classification", "--data", str(data), *RECIPE, "--wide", "--linear")
    proc = train(*common, "--out", str(validated))
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = train(*common, "--out", str(refit), "--refit-from", str(validated), "--version", "2.0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "validation of the validated run" in proc.stdout

    before, after = store.read_manifest(validated), store.read_manifest(refit)
    store.verify(refit, after)
    assert after.version == "2.0"
    assert before.training is not None and after.training is not None
    assert (after.training.n_train, after.training.n_validation) == (40, 0)
    assert "refit on all 40 records" in (after.training.notes or "")
    # The validation numbers are the validated run's, and say so.
    assert after.metrics["validation"] == before.metrics["validation"]
    refit_info = after.metrics["refit"]
    assert refit_info["validated_version"] == before.version
    assert refit_info["validated_n_train"] == 36
    assert refit_info["validated_command"] == before.training.command
    fit = refit_info["former_validation_fit"]
    assert isinstance(fit, dict) and fit["n"] == 4
    assert after.temperature == before.temperature
    # Trained on the 4 validation reviews too: their own characters are in the vocabulary now.
    _, examples = examples_for("classification", data)
    held_out = {e.text[-1] for e in split(examples, 0.1, 13)[1]}
    assert len(held_out) == 4
    vocab_before = (validated / "vocab.json").read_text("utf-8")
    vocab_after = (refit / "vocab.json").read_text("utf-8")
    assert all(c not in vocab_before and c in vocab_after for c in held_out)
    # The same epochs and step sizes, and the linear part with the chosen C and mix.
    old, new = _history(validated), _history(refit)
    assert [r["epoch"] for r in new] == [r["epoch"] for r in old] == [1, 2, 3, 4]
    assert [r["lr"] for r in new] == [r["lr"] for r in old]
    assert all(r["val"] is None for r in new)
    chosen = ast.literal_eval((before.training.notes or "").split("linear part ")[1].split("; ")[0])
    line = f"linear C={chosen['linear_C']}, mix {chosen['mix']:.2f}: as the validated run chose"
    assert line in proc.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "nluserve", "model", "show", str(refit)],
        capture_output=True, text=True, check=True, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert f"validation of the validated run {before.version}" in shown.stdout
    results = load_model(refit).predict(["房间干净", "卫生很差"])
    assert all(isinstance(r, ClassResult) for r in results)


@pytest.mark.parametrize(
    ("scores", "steps"),
    [
        # Stalled after epoch 1: the scheduler halved after epoch 3 (two epochs without gain).
        ((50.0, 40.0, 40.0, 40.0), [2e-3, 2e-3, 2e-3, 1e-3]),
        # Gaining until epoch 2: one stale epoch, no halving (a constant replay would halve).
        ((50.0, 60.0, 60.0, 60.0), [2e-3, 2e-3, 2e-3, 2e-3]),
    ],
)
def test_refit_halves_the_step_size_where_the_validated_run_did(
    tmp_path: Path, scores: tuple[float, ...], steps: list[float]
) -> None:
    data = _reviews(tmp_path / "reviews.csv")
    validated = tmp_path / "validated"
    recipe = [*RECIPE, "--wide", "--linear"]
    recipe[recipe.index("--swa-from") + 1] = "4"
    common = ("classification", "--data", str(data), *recipe)
    assert train(*common, "--out", str(validated)).returncode == 0
    # The validated run's scores drive the refit's schedule, though the refit validates nothing.
    rows = _history(validated)
    for row, score in zip(rows, scores, strict=True):
        row["val"] = score
    (validated / "history.json").write_text(json.dumps(rows), "utf-8")
    refit = tmp_path / "refit"
    proc = train(*common, "--out", str(refit), "--refit-from", str(validated))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["lr"] for r in _history(refit)] == steps


def test_refit_of_a_ner_run_keeps_its_span_threshold(tmp_path: Path) -> None:
    data = write_cluener(tmp_path / "small.jsonl", copies=8)
    validated, refit = tmp_path / "validated", tmp_path / "refit"
    common = ("ner", "--data", str(data), *RECIPE)
    assert train(*common, "--out", str(validated)).returncode == 0
    proc = train(*common, "--out", str(refit), "--refit-from", str(validated))
    assert proc.returncode == 0, proc.stderr[-2000:]
    before, after = store.read_manifest(validated), store.read_manifest(refit)
    assert after.threshold == before.threshold
    assert after.training is not None and after.training.n_train == 32
    assert after.metrics["validation"]["f1"] == before.metrics["validation"]["f1"]
    text = "张三在北京大学读书。"
    [res] = load_model(refit).predict([text])
    assert isinstance(res, NerResult)
    assert all(text[e.start : e.end] == e.text for e in res.entities)
    # Another network is another recipe: its validation numbers would not be the refit's.
    other = tmp_path / "other"
    proc = train(*common, "--layers", "2", "--out", str(other), "--refit-from", str(validated))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "another network: layers 1 (not 2)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (other / "manifest.json").exists()
    # So is training it otherwise (the command line is where the validated run recorded it).
    proc = train(*common, "--augment", "1", "--out", str(other), "--refit-from", str(validated))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "another recipe: augment 0 (not 1)" in proc.stderr and "Traceback" not in proc.stderr
    assert not (other / "manifest.json").exists()


def test_refit_refuses_what_it_cannot_replay(tmp_path: Path) -> None:
    data = _reviews(tmp_path / "reviews.csv")
    best_epoch = tmp_path / "best-epoch"
    proc = train(
        "classification", "--data", str(data), "--out", str(best_epoch),
        "--epochs", "2", "--hidden", "16", "--no-lexicon", "--threads", "1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    cases = [
        # No weight averaging: the run's epoch was chosen on validation.
        (best_epoch, RECIPE, "only such runs can be refitted"),
        # Not a model directory at all.
        (tmp_path / "missing", RECIPE, "missing"),
    ]
    for reference, recipe, message in cases:
        out = tmp_path / "refit"
        proc = train(
            "classification", "--data", str(data), *recipe,
            "--out", str(out), "--refit-from", str(reference),
        )  # fmt: skip
        assert proc.returncode == 1, proc.stderr[-2000:]
        assert "cannot refit" in proc.stderr and message in proc.stderr
        assert "Traceback" not in proc.stderr
        assert not (out / "manifest.json").exists()


def test_a_validated_commands_repeated_augment_kinds_are_read_in_order() -> None:
    from nluserve.train.refit import recipe_of

    defaults: dict[str, object] = {
        "augment": 0,
        "augment_kinds": (),
        "augment_fresh": False,
        "nested": False,
    }
    command = (
        "nluserve train ner --augment 1 --augment-kind name=person "
        "--augment-kind=address=place --nested --augment-fresh"
    )
    assert recipe_of(command, defaults) == {
        "augment": 1,
        "augment_kinds": (("name", "person"), ("address", "place")),
        "augment_fresh": True,
        "nested": True,
    }
    assert recipe_of("nluserve train ner", defaults) == defaults
