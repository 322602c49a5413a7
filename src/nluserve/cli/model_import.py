"""``nluserve model import``: a Hugging Face BERT checkpoint in, an nluserve model directory out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nluserve.cli.output import fail
from nluserve.errors import CheckpointError


def import_model(
    src: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="checkpoint: config.json, weights, tokenizer files"),
    ],
    out: Annotated[Path, typer.Option("--out", help="model directory to write")],
    name: Annotated[str | None, typer.Option(help="model name (default: the out dir name)")] = None,
) -> None:
    """Convert a BERT-style token- or sequence-classification checkpoint (needs the train extra)."""
    # Checking the directory needs only the standard library; converting it needs torch.
    from nluserve.models.outdir import OutputDirError, check_output_dir
    from nluserve.train import hf_import

    try:
        check_output_dir(out, [src])
        checkpoint = hf_import.read_checkpoint(src)
    except (CheckpointError, OutputDirError) as exc:
        fail(str(exc))
    missing = hf_import.missing_modules()
    if missing:
        fail(f"model import needs the train extra (uv sync --extra train); missing: {missing}")
    try:
        manifest = hf_import.convert(
            checkpoint, out, name or out.name, command=f"nluserve model import {src} --out {out}"
        )
    except CheckpointError as exc:
        fail(str(exc))
    labels = ", ".join(lab.code for lab in manifest.labels)
    typer.echo(f"wrote {out} ({manifest.task}, labels: {labels})")
