"""``nluserve train``: train a bundled-style model from a corpus file (needs the train extra)."""

from __future__ import annotations

import shlex
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from nluserve.cli.output import fail


class Task(StrEnum):
    ner = "ner"
    classification = "classification"


def train(
    task: Annotated[Task, typer.Argument(help="ner or classification")],
    data: Annotated[Path, typer.Option(help="CLUENER jsonl, CMeEE json, or label,review CSV")],
    out: Annotated[Path, typer.Option(help="model directory to write")],
    name: Annotated[str | None, typer.Option(help="model name (default: the out dir name)")] = None,
    nested: Annotated[bool, typer.Option(help="keep overlapping/nested entities (CMeEE)")] = False,
    max_length: Annotated[int, typer.Option(help="window length in characters")] = 128,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    patience: Annotated[
        int, typer.Option(help="epochs without validation gain before stopping")
    ] = 4,
    max_minutes: Annotated[float, typer.Option(help="stop after this many minutes")] = 55.0,
    hidden: Annotated[int, typer.Option(help="LSTM units per direction")] = 192,
    layers: Annotated[int, typer.Option(min=1, help="stacked BiLSTM layers")] = 1,
    lr: Annotated[float, typer.Option()] = 2e-3,
    dropout: Annotated[float, typer.Option(help="dropout on embeddings and encoder outputs")] = 0.3,
    wide: Annotated[
        bool, typer.Option(help="classification: add a linear bag-of-n-grams path")
    ] = False,
    linear: Annotated[
        bool,
        typer.Option(
            help="classification: mix in a separately fitted NB-weighted char 1-3-gram linear model"
        ),
    ] = False,
    swa_from: Annotated[
        int | None,
        typer.Option(
            min=1, help="average the weights from this epoch to the last instead of the best epoch"
        ),
    ] = None,
    members: Annotated[
        int,
        typer.Option(
            min=1,
            help="train this many networks (seeds seed, seed+1, ...) and "
            "average their logits in one graph",
        ),
    ] = 1,
    compact: Annotated[
        bool,
        typer.Option(
            help="store large weights as float16 (embedding tables as int8 rows) in the graph "
            "file; ONNX Runtime widens them to float32 when it loads the model",
        ),
    ] = False,
    augment: Annotated[int, typer.Option(help="entity-replacement copies per sentence (NER)")] = 0,
    augment_fresh: Annotated[
        bool,
        typer.Option(
            help="draw the --augment copies' replacements again for every epoch instead of once"
        ),
    ] = False,
    augment_nested: Annotated[
        bool,
        typer.Option(
            help="also copy sentences with overlapping (nested) entities: each group of "
            "overlapping entities stays as it is, the others are replaced"
        ),
    ] = False,
    char_dropout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="hide this share of characters (id, bigrams, lexicon features) in each "
            "training batch",
        ),
    ] = 0.0,
    augment_kind: Annotated[
        list[str] | None,
        typer.Option(
            help="LABEL=KIND (KIND: person, place, organization, proper): half of LABEL's "
            "replacements are jieba's words of that kind; repeatable"
        ),
    ] = None,
    adversarial: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="adversarial training: also fit each batch with its character and bigram "
            "embeddings moved this far along their gradient (FGM; 0 is off, about 1 is usual)",
        ),
    ] = 0.0,
    pretrain_epochs: Annotated[
        int,
        typer.Option(
            min=0,
            help="first pretrain the encoder this many epochs on masked characters of the "
            "training split (plus --pretrain-data)",
        ),
    ] = 0,
    pretrain_data: Annotated[
        list[Path] | None,
        typer.Option(help="extra corpus file whose texts (labels ignored) join pretraining"),
    ] = None,
    pretrain_minutes: Annotated[
        float, typer.Option(help="stop pretraining after this many minutes")
    ] = 30.0,
    refit_from: Annotated[
        Path | None,
        typer.Option(
            help="a validated run's model directory (trained with --swa-from): train again on "
            "every record, validation included, with that run's epochs, step-size schedule, "
            "threshold or temperature and linear mix; its validation numbers are kept",
        ),
    ] = None,
    seed: Annotated[int, typer.Option()] = 13,
    val_fraction: Annotated[
        float, typer.Option(help="share of the file held out for validation")
    ] = 0.1,
    limit: Annotated[
        int | None, typer.Option(help="use only the first N records (smoke runs)")
    ] = None,
    lexicon: Annotated[
        bool, typer.Option(help="word-lexicon features from jieba's dictionary")
    ] = True,
    lexicon_kinds: Annotated[
        bool,
        typer.Option(
            help="mark the lexicon's person, place, organisation and other proper nouns "
            "(jieba's part-of-speech tags) in features of their own"
        ),
    ] = False,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads")] = None,
    version: Annotated[str, typer.Option()] = "1.0.0",
) -> None:
    """Train a model on a corpus file, keeping the best epoch on a held-out validation split."""
    try:
        from nluserve.train.lexicon_build import write_jieba_lexicon
        from nluserve.train.refit import RefitError
        from nluserve.train.trainer import TrainConfig, TrainingError
        from nluserve.train.trainer import train as run_training
    except ImportError as exc:
        fail(f"training needs the train extra (uv sync --extra train): {exc}")
    from nluserve.errors import NluserveError
    from nluserve.models.outdir import check_output_dir

    try:
        # Before any work: a run must not end by replacing somebody's files (or its own data).
        check_output_dir(out, [data, *(pretrain_data or ()), *([refit_from] if refit_from else [])])
    except NluserveError as exc:
        fail(str(exc))
    if not 0.0 < val_fraction < 1.0:
        fail(f"--val-fraction must be between 0 and 1 (exclusive), not {val_fraction}")
    lex_path = None
    if lexicon:
        out.parent.mkdir(parents=True, exist_ok=True)
        lex_path = write_jieba_lexicon(out.parent / f".{out.name}.lexicon.txt", typed=lexicon_kinds)
    cfg = TrainConfig(
        task=task.value,
        data=data,
        out=out,
        name=name or out.name,
        nested=nested,
        max_length=max_length,
        epochs=epochs,
        patience=patience,
        max_minutes=max_minutes,
        hidden=hidden,
        layers=layers,
        dropout=dropout,
        augment=augment,
        augment_fresh=augment_fresh,
        augment_nested=augment_nested,
        char_dropout=char_dropout,
        augment_kinds=_label_kinds(augment_kind or []),
        adversarial=adversarial,
        wide=wide,
        linear=linear,
        swa_from=swa_from,
        members=members,
        compact=compact,
        pretrain_epochs=pretrain_epochs,
        pretrain_data=tuple(pretrain_data or ()),
        pretrain_minutes=pretrain_minutes,
        lr=lr,
        seed=seed,
        val_fraction=val_fraction,
        limit=limit,
        refit_from=refit_from,
        lexicon=lex_path,
        threads=threads,
        version=version,
        command="nluserve train " + shlex.join(sys.argv[2:]),
    )
    try:
        manifest = run_training(cfg)
    except RefitError as exc:
        fail(f"cannot refit: {exc}")
    except (TrainingError, NluserveError) as exc:  # DataFormatError: the file's line, in one line
        fail(str(exc))
    finally:
        if lex_path:
            lex_path.unlink(missing_ok=True)
    val = manifest.metrics.get("validation", {})
    shown = {
        k: v for k, v in val.items() if k in ("precision", "recall", "f1", "accuracy", "macro_f1")
    }
    source = " of the validated run" if refit_from else ""
    typer.echo(f"wrote {out} (validation{source}: {shown})")


def _label_kinds(pairs: list[str]) -> tuple[tuple[str, str], ...]:
    """``--augment-kind name=person`` pairs, checked against the lexicon's kinds."""
    from nluserve.runtime.lexicon import KINDS

    out = []
    for pair in pairs:
        label, _, kind = pair.partition("=")
        if not label or kind not in KINDS:
            fail(f"--augment-kind {pair!r}: expected LABEL=KIND, KIND one of {', '.join(KINDS)}")
        out.append((label, kind))
    return tuple(out)
