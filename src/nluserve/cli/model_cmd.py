"""``nluserve model list|show|verify|import``: what is installed, and bringing models in."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from nluserve.cli.model_import import import_model
from nluserve.cli.output import console, fail, print_json
from nluserve.errors import NluserveError
from nluserve.models import store

model_app = typer.Typer(no_args_is_help=True, help="Installed models: list, show, verify, import.")
model_app.command("import")(import_model)

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON for machines")]


@model_app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """List installed models (bundled and NLUSERVE_MODELS_DIR)."""
    rows: list[dict[str, str]] = []
    for name, path in store.available().items():
        try:
            m = store.read_manifest(path)
            rows.append(
                {
                    "name": name,
                    "version": m.version,
                    "task": m.task,
                    "labels": ", ".join(lab.code for lab in m.labels),
                    "path": str(path),
                }
            )
        except NluserveError as exc:
            rows.append({"name": name, "error": str(exc), "path": str(path)})
    if as_json:
        print_json(rows)
        return
    table = Table("name", "version", "task", "labels", "path")
    for r in rows:
        table.add_row(
            r["name"],
            r.get("version", "?"),
            r.get("task", r.get("error", "")),
            r.get("labels", ""),
            r["path"],
        )
    console.print(table)


@model_app.command("show")
def show(name: str, as_json: JsonOpt = False) -> None:
    """Show a model's manifest: labels, limits, provenance and validation metrics."""
    try:
        path = store.resolve(name)
        manifest = store.read_manifest(path)
    except NluserveError as exc:
        fail(str(exc))
    if as_json:
        print_json(manifest.model_dump(mode="json"))
        return
    console.print(f"[bold]{manifest.name}[/] {manifest.version} ({manifest.task}) at {path}")
    console.print(manifest.description or manifest.architecture)
    table = Table("code", "中文", "English", "aliases")
    for lab in manifest.labels:
        table.add_row(lab.code, lab.zh, lab.en, ", ".join(lab.aliases))
    console.print(table)
    console.print(f"max_length {manifest.max_length}, nested {manifest.nested}")
    val = manifest.metrics.get("validation", {})
    summary = {
        k: v
        for k, v in val.items()
        if k in ("precision", "recall", "f1", "accuracy", "macro_f1", "n")
    }
    refit = manifest.metrics.get("refit")
    if refit:
        # The weights saw these records: the numbers are the validated run's, not theirs.
        console.print(
            f"validation of the validated run {refit.get('validated_version')}: {summary} "
            "(these weights are that recipe refit on every record)"
        )
    else:
        console.print(f"validation: {summary}")
    if manifest.training:
        console.print(f"trained from {manifest.training.data}: {manifest.training.command}")


@model_app.command("verify")
def verify(name: str) -> None:
    """Check every file of a model against the SHA-256 in its manifest."""
    try:
        path = store.resolve(name)
        manifest = store.read_manifest(path)
        store.verify(path, manifest)
    except NluserveError as exc:
        fail(str(exc))
    console.print(
        f"[green]ok[/] {manifest.name} {manifest.version}: {len(manifest.files)} files verified"
    )
