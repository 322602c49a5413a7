"""``nluserve predict`` and ``nluserve eval``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table
from rich.text import Text

from nluserve.cli.output import console, err_console, fail, print_json
from nluserve.data.readers import read_examples
from nluserve.errors import NluserveError
from nluserve.evaluation.metrics import score_classification, score_ner
from nluserve.runtime.model import Model, load_model
from nluserve.runtime.results import ClassResult, NerResult, Result

_COLOURS = [
    "red",
    "green",
    "blue",
    "magenta",
    "cyan",
    "yellow",
    "bright_red",
    "bright_green",
    "bright_blue",
    "bright_magenta",
]


def _load(name: str) -> Model:
    try:
        return load_model(name)
    except NluserveError as exc:
        fail(str(exc))


def predict(
    model: Annotated[str, typer.Argument(help="bundled model name or model directory")],
    texts: Annotated[list[str], typer.Argument(help="one or more texts")],
    labels: Annotated[
        str | None, typer.Option(help="comma-separated entity types to keep (人物,地点)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Run a model on texts and show the result (entities highlighted in the terminal)."""
    m = _load(model)
    if labels and m.task != "ner":
        fail(f"--labels picks entity types; {m.name} is a {m.task} model and answers every class")
    try:
        results = m.predict(texts, labels=labels.split(",") if labels else None)
    except NluserveError as exc:
        fail(str(exc))
    if as_json:
        print_json([dataclasses.asdict(r) for r in results])
        return
    colour = {lab.code: _COLOURS[i % len(_COLOURS)] for i, lab in enumerate(m.labels)}
    names = {lab.code: lab.zh for lab in m.labels}
    for text, res in zip(texts, results, strict=True):
        _show(text, res, colour, names)


def _show(text: str, res: Result, colour: dict[str, str], names: dict[str, str]) -> None:
    if isinstance(res, ClassResult):
        scores = ", ".join(f"{k} {v:.3f}" for k, v in res.scores.items())
        console.print(
            f"{text}\n  → [bold]{res.label}[/] ({names.get(res.label, '')}) {scores}",
            highlight=False,
        )
        return
    assert isinstance(res, NerResult)
    line = Text(text)
    for ent in res.entities:
        line.stylize(f"bold {colour[ent.label]} underline", ent.start, ent.end)
    console.print(line)
    for ent in res.entities:
        console.print(
            f"  [{colour[ent.label]}]{ent.label}[/] ({names.get(ent.label, '')}) "
            f"{ent.text!r} [{ent.start}, {ent.end}) {ent.score:.3f}",
            highlight=False,
        )


def evaluate(
    model: Annotated[str, typer.Argument(help="bundled model name or model directory")],
    file: Annotated[Path, typer.Argument(help="CLUENER jsonl, CMeEE json, or sentiment CSV")],
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object on stdout, nothing else")
    ] = False,
    batch: Annotated[int, typer.Option(min=1, help="texts per predict call")] = 64,
) -> None:
    """Score a model on a labelled file: strict micro P/R/F1 (NER) or accuracy/macro-F1."""
    m = _load(model)
    try:
        fmt, examples = read_examples(file)
    except (NluserveError, OSError) as exc:
        fail(str(exc))
    data_task = "classification" if fmt == "csv" else "ner"
    if data_task != m.task:  # it would score 0 and look like a result
        fail(f"{file} is {fmt} data for a {data_task} model; {m.name} is a {m.task} model")
    if not examples:
        fail(f"{file} holds no records: nothing to score")
    if m.task == "classification":
        codes = {lab.code for lab in m.labels}
        for ex in examples:
            ex.label = _class_code(ex.label or "", codes)
        foreign = sorted({ex.label or "" for ex in examples} - codes)
        if foreign:  # scored, they would be misses that look like a result
            fail(
                f"{file}: labels {foreign} are not classes of {m.name} ({', '.join(sorted(codes))}, or 0/1)"
            )
    else:
        gold = {span.label for ex in examples for span in ex.spans}
        if not gold:
            fail(f"{file} holds no gold entities: nothing to score (is it an NER file?)")
        known = {lab.code for lab in m.labels}
        if not gold & known:  # another corpus: every gold entity a miss, F1 0 that looks real
            fail(
                f"{file}: none of its entity types ({', '.join(sorted(gold))}) is a label of "
                f"{m.name} ({', '.join(sorted(known))})"
            )
        foreign = sorted(gold - known)
        if foreign:
            # A model of fewer types scored on a full corpus: those entities count as misses,
            # which is the honest score, but say so.
            n = sum(1 for ex in examples for span in ex.spans if span.label in foreign)
            err_console.print(
                f"note: {n} gold entities of types {foreign}, which {m.name} does not predict, "
                "count as misses"
            )
    preds: list[Result] = []
    # By texts and by characters: one 2-million-character record takes minutes too.
    quick = len(examples) < 200 and sum(len(e.text) for e in examples) < 100_000
    with Progress(console=err_console, transient=True, disable=quick) as bar:
        task = bar.add_task("evaluating", total=len(examples))
        for i in range(0, len(examples), batch):
            chunk = examples[i : i + batch]
            preds += m.predict([e.text for e in chunk])
            bar.advance(task, len(chunk))
    scores = (
        score_ner(examples, preds) if m.task == "ner" else score_classification(examples, preds)
    )
    if as_json:
        print_json(scores)
        return
    head = ("precision", "recall", "f1") if m.task == "ner" else ("accuracy", "macro_f1")
    console.print(
        f"{m.name} on {file} (n={scores['n']}): " + ", ".join(f"{k} {scores[k]:.2f}" for k in head)
    )
    table = Table("label", "precision", "recall", "f1", "support")
    per_label = scores["per_label"]
    assert isinstance(per_label, dict)
    for label, row in per_label.items():
        table.add_row(
            label, *(f"{row[k]:.2f}" for k in ("precision", "recall", "f1")), str(row["support"])
        )
    console.print(table)


def _class_code(raw: str, codes: set[str]) -> str:
    """CSV labels are 0/1; map them onto the model's codes through the shared catalog names."""
    mapping = {"1": "positive", "0": "negative"}
    return raw if raw in codes else mapping.get(raw, raw)
